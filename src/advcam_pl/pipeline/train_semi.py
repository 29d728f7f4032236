"""Stage train_semi: CCT (``cfg.semi``, e.g. ``semi=cct``) on pixel-labelled images plus weakly labelled ones.

Reads the images of ``semi.data.labelled_list`` with their GT masks and those of ``weak_pool_list −
labelled_list`` with the weak chain's masks: ``semi.weak_labels=sem_seg`` reads
``cfg.artifacts.sem_seg_dir`` (make_sem_seg), ``ir_label`` reads ``cfg.artifacts.ir_label_dir``
(make_ir_label), ``none`` reads no masks (:class:`~advcam_pl.data.semi.SemiDataModule`; a missing mask
is an error naming the id and the folder, unless ``data.skip_bad``). Trains ``semi.train.epochs``
passes over the weak list, validating on ``data.val_list`` (full images, single scale) every
``semi.train.val_every_n_epochs`` epochs; writes ``cfg.artifacts.semi_ckpt`` (atomically, at the
end). A killed run resumes from ``<semi_ckpt stem>.progress.ckpt``, written every epoch and every
``semi.train.save_every_n_steps`` steps (:func:`~advcam_pl.training.checkpoint.fit_resumable`).
Extra callbacks: ``cfg.callbacks``. Weak images recorded as skipped in the weak-label folder are left
out. The encoder's ResNet starts from ``semi.module.pretrained`` or, with ``semi.init_from_cam``, from the
trained CAM classifier ``cfg.artifacts.cam_ckpt`` (as train_seg's ``model.init_from_cam``). Done when the
checkpoint is complete and was made with this run's settings, weak labels and initial weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from advcam_pl.pipeline.common import (
    backbone_source,
    build_trainer,
    data_root,
    fit_callbacks,
    fit_metrics,
    fit_trainer_overrides,
    initial_weights_input,
    log_metrics,
    stage_loggers,
    training_callbacks,
)
from advcam_pl.pipeline.provenance import (
    Provenance,
    folder_identity,
    list_identity,
    settings_of,
)
from advcam_pl.pipeline.skipped import log_skipped, read_skipped
from advcam_pl.training.checkpoint import checkpoint_is_complete, fit_resumable, hpc_dir, progress_path

log = logging.getLogger(__name__)

# What determines CCT's weights (test_* and eval are evaluation settings; workers and checkpoints are not).
SETTINGS = ("semi.module", "semi.data", "semi.train", "semi.weak_labels", "semi.init_from_cam", "seed", "data.name", "trainer.precision")
IGNORED = ("semi.module.test_scales", "semi.module.test_flip", "semi.module.test_average", "semi.data.root",
           "semi.data.num_workers", "semi.data.weak_label_dir", "semi.train.save_every_n_steps",
           "semi.train.val_every_n_epochs", "semi.train.val_batches")


def provenance(cfg: DictConfig) -> Provenance:
    ckpt, data = Path(cfg.artifacts.semi_ckpt), cfg.semi.data
    weak_dir = data.get("weak_label_dir")
    inputs = {"weak_labels": folder_identity(weak_dir) if weak_dir else "none",
              "labelled_list": list_identity(cfg.data.root, data.labelled_list),
              "weak_pool_list": list_identity(cfg.data.root, data.weak_pool_list)}
    inputs.update(initial_weights_input(cfg, "semi"))
    return Provenance("train_semi", ckpt, settings_of(cfg, SETTINGS, IGNORED), inputs,
                      keep_both="a new semi.name or cam.name (or another artifacts.semi_ckpt=...)",
                      companions=[progress_path(ckpt), hpc_dir(ckpt)])


def is_done(cfg: DictConfig) -> bool:
    return checkpoint_is_complete(cfg.artifacts.semi_ckpt) and provenance(cfg).matches()


def run(cfg: DictConfig) -> dict:
    semi, tr = cfg.semi, cfg.semi.train
    ckpt = Path(cfg.artifacts.semi_ckpt)
    root = data_root(cfg)
    pretrained = backbone_source(cfg, "semi")  # its error before any record is written
    provenance(cfg).begin(cfg)
    skipped = read_skipped(semi.data.get("weak_label_dir"))
    log_skipped("train_semi", skipped)
    datamodule = hydra.utils.instantiate(semi.data, root=root, skip_ids=sorted(skipped), _convert_="all")
    model = hydra.utils.instantiate(semi.module, _convert_="all", pretrained=pretrained)
    callbacks = fit_callbacks("train_semi", ckpt, tr.get("save_every_n_steps", 0))
    val_batches = tr.get("val_batches")
    with stage_loggers(cfg, "train_semi") as loggers:
        callbacks += training_callbacks(cfg, loggers)
        trainer = build_trainer(
            cfg, loggers, callbacks,
            max_epochs=tr.epochs,
            check_val_every_n_epoch=tr.val_every_n_epochs,
            limit_val_batches=1.0 if val_batches is None else int(val_batches),
            num_sanity_val_steps=0,
            **fit_trainer_overrides(ckpt),
        )  # fmt: skip
        log.info("train_semi: %s (ResNet-%d, %d auxiliary decoders), weak labels %s from %s, %d epochs",
                 semi.name, semi.module.depth, len(model.net.aux_decoders), semi.weak_labels,
                 semi.data.weak_label_dir, tr.epochs)  # fmt: skip
        fit_resumable(trainer, model, datamodule, ckpt)
        metrics = {**fit_metrics(trainer), "epochs": int(trainer.current_epoch),
                   "num_labelled_images": len(datamodule.labelled_set), "num_weak_images": len(datamodule.weak_set),
                   "weak_labels": str(semi.weak_labels), "backbone": model.net.encoder.weights_source,
                   "skipped_ids": sorted(skipped)}  # fmt: skip
        log_metrics(loggers, {f"train_semi/{k}": v for k, v in metrics.items()}, step=trainer.global_step)
    metrics["objective"] = metrics["train_loss"]  # the only number a training stage has (lower is better)
    log.info("train_semi: wrote %s (final loss %.4f)", ckpt, metrics["train_loss"])
    return metrics
