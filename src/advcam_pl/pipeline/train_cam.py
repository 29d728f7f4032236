"""Stage train_cam: train the CAM classifier on image-level labels (IRN's ``step/train_cam.py``).

Reads the images and labels of ``cfg.data.train_list`` (monitoring on ``cfg.data.val_list``) and
writes one Lightning checkpoint (weights and hyper-parameters, atomically), ``cfg.artifacts.cam_ckpt``;
load it with ``CAMClassifier.load_from_checkpoint(path)``. Extra callbacks: ``cfg.callbacks``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import hydra
from omegaconf import DictConfig

from advcam_pl.data.datamodules import ClassificationDataModule
from advcam_pl.pipeline.common import (
    build_trainer,
    data_root,
    seed_everything,
    stage_loggers,
    training_callbacks,
)
from advcam_pl.training.checkpoint import save_checkpoint_atomic

log = logging.getLogger(__name__)


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
        trainer = build_trainer(cfg, loggers, training_callbacks(cfg, loggers), max_epochs=train.max_epochs)
        trainer.fit(model, datamodule=datamodule)
        path = save_checkpoint_atomic(trainer, cfg.artifacts.cam_ckpt, weights_only=True)
    log.info("train_cam: checkpoint written to %s", path)

    def metric(name: str) -> float:
        value = trainer.callback_metrics.get(name)
        return math.nan if value is None else float(value)

    val_map = metric("val/mAP")
    return {"val_map": val_map, "val_loss": metric("val/loss"), "train_loss": metric("train/loss_epoch"),
            "objective": val_map}


def is_done(cfg: DictConfig) -> bool:
    return Path(cfg.artifacts.cam_ckpt).is_file()
