"""Stage train_cam: train the CAM classifier on image-level labels (IRN's ``step/train_cam.py``).

Reads the images and labels of ``cfg.data.train_list`` (monitoring on ``cfg.data.val_list``) and
writes one Lightning checkpoint (weights and hyper-parameters, atomically), ``cfg.artifacts.cam_ckpt``;
the network is ``cfg.classifier.module`` (``CAMClassifier``, or ``TorchvisionCAMClassifier`` for a
torchvision classifier through the adapter protocol), loaded back with that class's
``load_from_checkpoint(path)``. Extra callbacks: ``cfg.callbacks``.
A killed fit resumes from ``<cam_ckpt stem>.progress.ckpt`` (every epoch and every
``classifier.train.save_every_n_steps`` steps). Done when the checkpoint is complete and was made
with this run's ``classifier`` settings and image list (:mod:`advcam_pl.pipeline.provenance`).
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
    fit_callbacks,
    fit_trainer_overrides,
    seed_everything,
    stage_loggers,
    training_callbacks,
)
from advcam_pl.pipeline.provenance import Provenance, file_identity, list_identity, settings_of
from advcam_pl.training.checkpoint import checkpoint_is_complete, fit_resumable, hpc_dir, progress_path

log = logging.getLogger(__name__)

# What determines the classifier's weights (the rest of the config does not).
SETTINGS = ("classifier", "seed", "data.name", "data.train_list", "data.skip_bad", "trainer.precision")
IGNORED = ("classifier.name", "classifier.train.save_every_n_steps")


def provenance(cfg: DictConfig) -> Provenance:
    ckpt = Path(cfg.artifacts.cam_ckpt)
    inputs = {"train_list": list_identity(cfg.data.root, cfg.data.train_list)}
    pretrained = cfg.classifier.module.get("pretrained")
    if pretrained and Path(str(pretrained)).is_file():
        inputs["pretrained"] = file_identity(pretrained)
    return Provenance("train_cam", ckpt, settings_of(cfg, SETTINGS, IGNORED), inputs,
                      keep_both="another checkpoint path (artifacts.cam_ckpt=...) or another paths.work_dir",
                      companions=[progress_path(ckpt), hpc_dir(ckpt)])


def run(cfg: DictConfig) -> dict:
    seed_everything(cfg.get("seed", 0))
    data_root(cfg)
    provenance(cfg).begin(cfg)
    train = cfg.classifier.train
    ckpt = cfg.artifacts.cam_ckpt
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
        callbacks = [*fit_callbacks("train_cam", ckpt, train.get("save_every_n_steps", 0)),
                     *training_callbacks(cfg, loggers)]
        trainer = build_trainer(cfg, loggers, callbacks, max_epochs=train.max_epochs, **fit_trainer_overrides(ckpt))
        path = fit_resumable(trainer, model, datamodule, ckpt)
    log.info("train_cam: checkpoint written to %s", path)

    def metric(name: str) -> float:
        value = trainer.callback_metrics.get(name)
        return math.nan if value is None else float(value)

    val_map = metric("val/mAP")
    return {"val_map": val_map, "val_loss": metric("val/loss"), "train_loss": metric("train/loss_epoch"),
            "steps": int(trainer.global_step), "objective": val_map}


def is_done(cfg: DictConfig) -> bool:
    return checkpoint_is_complete(cfg.artifacts.cam_ckpt) and provenance(cfg).matches()
