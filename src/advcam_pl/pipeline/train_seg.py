"""Stage train_seg: DeepLab-v2 on the pseudo masks (``cfg.model``, e.g. ``model=deeplab_v2``).

Reads the images of ``cfg.data.train_list`` and the label PNGs of ``cfg.model.train.label_dir``
(default ``cfg.artifacts.sem_seg_dir``, the output of make_sem_seg; ``gt`` = the dataset's masks);
writes ``cfg.artifacts.seg_ckpt`` (atomically, at the end). A killed run resumes from the progress
checkpoint ``<seg_ckpt stem>.progress.ckpt`` written every ``train.save_every_n_steps`` steps
(:func:`~advcam_pl.training.checkpoint.fit_resumable`). Extra callbacks: ``cfg.callbacks``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from advcam_pl.data.segmentation import SegmentationDataModule
from advcam_pl.pipeline.common import (
    build_trainer,
    data_root,
    fit_metrics,
    log_metrics,
    stage_loggers,
    training_callbacks,
)
from advcam_pl.training.callbacks import progress_callbacks
from advcam_pl.training.checkpoint import fit_resumable

log = logging.getLogger(__name__)


def is_done(cfg: DictConfig) -> bool:
    return Path(cfg.artifacts.seg_ckpt).is_file()


def datamodule_from_cfg(cfg: DictConfig) -> SegmentationDataModule:
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
    )


def run(cfg: DictConfig) -> dict:
    tr = cfg.model.train
    ckpt = Path(cfg.artifacts.seg_ckpt)
    datamodule = datamodule_from_cfg(cfg)
    model = hydra.utils.instantiate(cfg.model.module, _convert_="all", max_steps=tr.max_steps)
    callbacks = progress_callbacks(ckpt, tr.get("save_every_n_steps", 0))
    val_batches = int(tr.get("val_batches", 0) or 0)
    with stage_loggers(cfg, "train_seg") as loggers:
        callbacks += training_callbacks(cfg, loggers)
        trainer = build_trainer(
            cfg, loggers, callbacks,
            max_steps=tr.max_steps,
            accumulate_grad_batches=tr.accumulate,
            limit_val_batches=val_batches,
            num_sanity_val_steps=0,
        )  # fmt: skip
        log.info("train_seg: %s (ResNet-%d, %d ImageNet/initial tensors loaded), %d steps, batch %d x %d "
                 "accumulated x %d devices", cfg.model.name, cfg.model.module.depth,
                 model.n_pretrained_loaded,
                 tr.max_steps, tr.batch_size, tr.accumulate, trainer.world_size)
        fit_resumable(trainer, model, datamodule, ckpt)
        metrics = {**fit_metrics(trainer), "num_train_images": len(datamodule.train_set),
                   "pretrained_tensors_loaded": int(model.n_pretrained_loaded)}
        log_metrics(loggers, {f"train_seg/{k}": v for k, v in metrics.items()}, step=trainer.global_step)
    metrics["objective"] = metrics["train_loss"]  # the only number a training stage has (lower is better)
    log.info("train_seg: wrote %s (final loss %.4f)", ckpt, metrics["train_loss"])
    return metrics
