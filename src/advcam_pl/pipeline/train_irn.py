"""Stage train_irn: train IRN's boundary and displacement branches on the IR labels.

Reads the images of ``cfg.data.train_list`` and ``cfg.artifacts.ir_label_dir``; writes the Lightning
checkpoint ``cfg.artifacts.irn_ckpt`` (atomically; its frozen backbone included). Module kwargs
``cfg.irn.module``, training settings ``cfg.irn.train``. The frozen backbone starts from
``cfg.irn.module.pretrained`` (ImageNet, official) or, with ``cfg.irn.init_from_cam``, from the
trained CAM classifier ``cfg.artifacts.cam_ckpt`` (no ImageNet weights offline: tests, demo).
``cfg.irn.module.radius: auto`` follows the grid size (:mod:`advcam_pl.pipeline.resolve_auto`).
After training, the mean displacement over ``cfg.data.infer_list`` is stored in the model
(:class:`~advcam_pl.training.callbacks.MeanShiftCallback`). Extra callbacks: ``cfg.callbacks``.
A killed fit resumes from ``<irn_ckpt stem>.progress.ckpt`` (every epoch and every
``irn.train.save_every_n_steps`` steps). Images recorded as skipped in the IR-label folder are left
out. Done when the checkpoint is complete and was made with this run's settings and inputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from advcam_pl.data.affinity import AffinityDataModule
from advcam_pl.models.irn import IRN
from advcam_pl.pipeline import common
from advcam_pl.pipeline.common import (
    build_trainer,
    data_root,
    fit_callbacks,
    fit_trainer_overrides,
    initial_weights_input,
    log_metrics,
    seed_everything,
    stage_loggers,
    training_callbacks,
)
from advcam_pl.pipeline.provenance import (
    Provenance,
    folder_identity,
    list_identity,
    settings_of,
)
from advcam_pl.pipeline.resolve_auto import irn_radius, resolved_settings
from advcam_pl.pipeline.skipped import log_skipped, read_skipped
from advcam_pl.training.callbacks import MeanShiftCallback
from advcam_pl.training.checkpoint import checkpoint_is_complete, fit_resumable, hpc_dir, progress_path

log = logging.getLogger(__name__)

# What determines the IRN weights.
SETTINGS = ("irn.module", "irn.train", "irn.init_from_cam", "seed", "data.name", "data.train_list",
            "data.infer_list", "trainer.precision")
IGNORED = ("irn.train.num_workers", "irn.train.save_every_n_steps")


def provenance(cfg: DictConfig) -> Provenance:
    ckpt = Path(cfg.artifacts.irn_ckpt)
    inputs = {"ir_label_dir": folder_identity(cfg.artifacts.ir_label_dir),
              "train_list": list_identity(cfg.data.root, cfg.data.train_list)}
    inputs.update(initial_weights_input(cfg, "irn", key="backbone"))
    settings = {**settings_of(cfg, SETTINGS, IGNORED), **resolved_settings(cfg, SETTINGS)}
    return Provenance("train_irn", ckpt, settings, inputs,
                      keep_both="a new cam.name (or another artifacts.irn_ckpt=...)",
                      companions=[progress_path(ckpt), hpc_dir(ckpt)])


def is_done(cfg: DictConfig) -> bool:
    return checkpoint_is_complete(cfg.artifacts.irn_ckpt) and provenance(cfg).matches()


def backbone_source(cfg: DictConfig) -> str | None:
    return common.backbone_source(cfg, "irn")


def run(cfg: DictConfig) -> dict:
    seed_everything(cfg.get("seed", 0))
    root = data_root(cfg)
    source, radius = backbone_source(cfg), irn_radius(cfg)  # their errors before any record is written
    provenance(cfg).begin(cfg)
    skipped = read_skipped(cfg.artifacts.ir_label_dir)
    log_skipped("train_irn", skipped)
    train = cfg.irn.train
    model: IRN = hydra.utils.instantiate(cfg.irn.module, radius=radius)
    n_loaded = model.init_backbone(source)
    log.info("train_irn: backbone %s, %d tensors loaded", source, n_loaded)
    datamodule = AffinityDataModule(
        root,
        cfg.data.train_list,
        cfg.artifacts.ir_label_dir,
        crop_size=train.crop_size,
        rescale=tuple(train.rescale) if train.rescale else None,
        hflip=train.hflip,
        batch_size=train.batch_size,
        num_workers=train.get("num_workers", cfg.data.num_workers),
        infer_split=cfg.data.infer_list,
        mean_shift_images=train.get("mean_shift_images"),
        skip_ids=skipped,
    )
    ckpt = Path(cfg.artifacts.irn_ckpt)
    with stage_loggers(cfg, "train_irn") as loggers:
        callbacks = [*fit_callbacks("train_irn", ckpt, train.get("save_every_n_steps", 0)), MeanShiftCallback(),
                     *training_callbacks(cfg, loggers)]
        trainer = build_trainer(cfg, loggers, callbacks, max_epochs=int(train.max_epochs),
                                max_steps=int(train.get("max_steps") or -1), **fit_trainer_overrides(ckpt))
        fit_resumable(trainer, model, datamodule, ckpt, weights_only=False)
        metrics = {k.split("/", 1)[1]: float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith("train/")}
        metrics.update(steps=int(trainer.global_step), backbone_tensors_loaded=int(n_loaded),
                       skipped_ids=sorted(skipped))
        log_metrics(loggers, {f"irn/{k}": v for k, v in metrics.items()})
    if "loss" in metrics:
        metrics["objective"] = metrics["loss"]
    log.info("train_irn: %s -> %s", metrics, ckpt)
    return metrics
