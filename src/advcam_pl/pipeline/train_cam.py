"""Stage train_cam: train the CAM classifier on image-level labels (IRN's ``step/train_cam.py``).

Reads the images and labels of ``cfg.data.train_list`` (monitoring on ``cfg.data.val_list``) and
writes one Lightning checkpoint, ``cfg.artifacts.cam_ckpt``; load it with
``CAMClassifier.load_from_checkpoint(path)``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import LearningRateMonitor

from advcam_pl.data.datamodules import ClassificationDataModule
from advcam_pl.pipeline.common import build_trainer, data_root, seed_everything, stage_loggers

log = logging.getLogger(__name__)


def save_checkpoint(trainer: pl.Trainer, path: str | os.PathLike) -> Path:
    """Weights and hyper-parameters (no optimiser state) to ``path``, written under a temporary
    name and renamed, so an existing file is always a complete checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(tmp, weights_only=True)  # every rank calls it; rank 0 writes
    if trainer.is_global_zero:
        os.replace(tmp, path)
    trainer.strategy.barrier()
    return path


def run(cfg: DictConfig) -> dict:
    seed_everything(cfg.get("seed", 0))
    train = cfg.classifier.train
    datamodule = ClassificationDataModule(
        str(data_root(cfg)),
        cfg.data.train_list,
        cfg.data.val_list,
        batch_size=train.batch_size,
        num_workers=cfg.data.num_workers,
        crop_size=train.crop_size,
        resize_long=tuple(train.resize_long),
        skip_bad=cfg.data.skip_bad,
    )
    model = hydra.utils.instantiate(cfg.classifier.module)
    with stage_loggers(cfg, "train_cam") as loggers:
        callbacks = [LearningRateMonitor(logging_interval="step")] if loggers else []
        trainer = build_trainer(cfg, loggers, callbacks, max_epochs=train.max_epochs)
        trainer.fit(model, datamodule=datamodule)
        path = save_checkpoint(trainer, cfg.artifacts.cam_ckpt)
    log.info("train_cam: checkpoint written to %s", path)

    def metric(name: str) -> float:
        value = trainer.callback_metrics.get(name)
        return math.nan if value is None else float(value)

    val_map = metric("val/mAP")
    return {"val_map": val_map, "val_loss": metric("val/loss"), "train_loss": metric("train/loss_epoch"),
            "objective": val_map}


def is_done(cfg: DictConfig) -> bool:
    return Path(cfg.artifacts.cam_ckpt).is_file()
