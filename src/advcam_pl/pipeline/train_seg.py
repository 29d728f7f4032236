"""Stage train_seg: DeepLab-v2 on the pseudo masks (``cfg.model``, e.g. ``model=deeplab_v2``).

Reads the images of ``cfg.data.train_list`` and the label PNGs of ``cfg.model.train.label_dir``
(default ``cfg.artifacts.sem_seg_dir``, the output of make_sem_seg; ``gt`` = the dataset's masks);
the backbone starts from ``cfg.model.module.pretrained`` or, with ``cfg.model.init_from_cam``, from the
trained CAM classifier ``cfg.artifacts.cam_ckpt`` (as train_irn's ``irn.init_from_cam``);
writes ``cfg.artifacts.seg_ckpt`` (atomically, at the end). A killed run resumes from the progress
checkpoint ``<seg_ckpt stem>.progress.ckpt`` written every epoch and every ``train.save_every_n_steps``
steps (:func:`~advcam_pl.training.checkpoint.fit_resumable`). Extra callbacks: ``cfg.callbacks``.
Images recorded as skipped in the label folder are left out. Done when the checkpoint is complete
and was made with this run's settings and labels.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from advcam_pl.data.segmentation import SegmentationDataModule, is_gt
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

# What determines the segmentation network's weights (test_* and eval are evaluation settings).
SETTINGS = ("model.module", "model.train", "model.init_from_cam", "seed", "data.name", "data.train_list", "data.skip_bad",
            "trainer.precision")
IGNORED = ("model.module.test_scales", "model.module.test_flip", "model.module.test_fuse",
           "model.train.save_every_n_steps", "model.train.val_batches")


def label_skipped(cfg: DictConfig) -> dict[str, str]:
    """The images the label folder's stage skipped (none for the dataset's own masks)."""
    label_dir = cfg.model.train.label_dir
    return {} if is_gt(label_dir) else read_skipped(label_dir)


def provenance(cfg: DictConfig) -> Provenance:
    ckpt = Path(cfg.artifacts.seg_ckpt)
    label_dir = cfg.model.train.label_dir
    inputs = {"labels": "gt" if is_gt(label_dir) else folder_identity(label_dir),
              "train_list": list_identity(cfg.data.root, cfg.data.train_list)}
    inputs.update(initial_weights_input(cfg, "model"))
    return Provenance("train_seg", ckpt, settings_of(cfg, SETTINGS, IGNORED), inputs,
                      keep_both="a new cam.name or model.name (or another artifacts.seg_ckpt=...)",
                      companions=[progress_path(ckpt), hpc_dir(ckpt)])


def is_done(cfg: DictConfig) -> bool:
    return checkpoint_is_complete(cfg.artifacts.seg_ckpt) and provenance(cfg).matches()


def datamodule_from_cfg(cfg: DictConfig, skip_ids=()) -> SegmentationDataModule:
    tr = cfg.model.train
    return SegmentationDataModule(
        root=data_root(cfg),
        train_list=cfg.data.train_list,
        val_list=cfg.data.val_list,
        label_dir=tr.label_dir,
        batch_size=tr.batch_size,
        num_workers=cfg.data.num_workers,
        crop_size=tr.crop_size,
        scale_range=tuple(tr.scale_range),
        flip=tr.flip,
        skip_bad=cfg.data.skip_bad,
        train_skip_ids=skip_ids,
    )


def run(cfg: DictConfig) -> dict:
    tr = cfg.model.train
    ckpt = Path(cfg.artifacts.seg_ckpt)
    data_root(cfg)
    pretrained = backbone_source(cfg, "model")  # its error before any record is written
    provenance(cfg).begin(cfg)
    skipped = label_skipped(cfg)
    log_skipped("train_seg", skipped)
    datamodule = datamodule_from_cfg(cfg, skipped)
    model = hydra.utils.instantiate(cfg.model.module, _convert_="all", max_steps=tr.max_steps,
                                    pretrained=pretrained)
    callbacks = fit_callbacks("train_seg", ckpt, tr.get("save_every_n_steps", 0))
    val_batches = int(tr.get("val_batches", 0) or 0)
    with stage_loggers(cfg, "train_seg") as loggers:
        callbacks += training_callbacks(cfg, loggers)
        trainer = build_trainer(
            cfg, loggers, callbacks,
            max_steps=tr.max_steps,
            accumulate_grad_batches=tr.accumulate,
            limit_val_batches=val_batches,
            num_sanity_val_steps=0,
            **fit_trainer_overrides(ckpt),
        )  # fmt: skip
        log.info("train_seg: %s (ResNet-%d, %d ImageNet/initial tensors loaded), %d steps, batch %d x %d "
                 "accumulated x %d devices", cfg.model.name, cfg.model.module.depth,
                 model.n_pretrained_loaded,
                 tr.max_steps, tr.batch_size, tr.accumulate, trainer.world_size)
        fit_resumable(trainer, model, datamodule, ckpt)
        metrics = {**fit_metrics(trainer), "num_train_images": len(datamodule.train_set),
                   "pretrained_tensors_loaded": int(model.n_pretrained_loaded), "skipped_ids": sorted(skipped)}
        log_metrics(loggers, {f"train_seg/{k}": v for k, v in metrics.items()}, step=trainer.global_step)
    metrics["objective"] = metrics["train_loss"]  # the only number a training stage has (lower is better)
    log.info("train_seg: wrote %s (final loss %.4f)", ckpt, metrics["train_loss"])
    return metrics
