"""Stage train_irn: train IRN's boundary and displacement branches on the IR labels.

Reads the images of ``cfg.data.train_list`` and ``cfg.artifacts.ir_label_dir``; writes the Lightning
checkpoint ``cfg.artifacts.irn_ckpt`` (atomically; its frozen backbone included). Module kwargs
``cfg.irn.module``, training settings ``cfg.irn.train``. The frozen backbone starts from
``cfg.irn.module.pretrained`` (ImageNet, official) or, with ``cfg.irn.init_from_cam``, from the
trained CAM classifier ``cfg.artifacts.cam_ckpt`` (no ImageNet weights offline: tests, demo).
After training, the mean displacement over ``cfg.data.infer_list`` is stored in the model
(:class:`~advcam_pl.training.callbacks.MeanShiftCallback`). Extra callbacks: ``cfg.callbacks``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from advcam_pl.data.affinity import AffinityDataModule
from advcam_pl.models.irn import IRN
from advcam_pl.pipeline.common import (
    build_trainer,
    data_root,
    log_metrics,
    seed_everything,
    stage_loggers,
    training_callbacks,
)
from advcam_pl.training.callbacks import MeanShiftCallback
from advcam_pl.training.checkpoint import save_checkpoint_atomic

log = logging.getLogger(__name__)


def is_done(cfg: DictConfig) -> bool:
    return Path(cfg.artifacts.irn_ckpt).is_file()


def backbone_source(cfg: DictConfig) -> str | None:
    if cfg.irn.get("init_from_cam", False):
        ckpt = Path(cfg.artifacts.cam_ckpt)
        if not ckpt.is_file():
            raise FileNotFoundError(f"irn.init_from_cam: the CAM checkpoint {ckpt} does not exist; run train_cam")
        return str(ckpt)
    return cfg.irn.module.get("pretrained")


def run(cfg: DictConfig) -> dict:
    seed_everything(cfg.get("seed", 0))
    root = data_root(cfg)
    train = cfg.irn.train
    model: IRN = hydra.utils.instantiate(cfg.irn.module)
    n_loaded = model.init_backbone(backbone_source(cfg))
    log.info("train_irn: backbone %s, %d tensors loaded", backbone_source(cfg), n_loaded)
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
    )
    ckpt = Path(cfg.artifacts.irn_ckpt)
    with stage_loggers(cfg, "train_irn") as loggers:
        callbacks = [MeanShiftCallback(), *training_callbacks(cfg, loggers)]
        trainer = build_trainer(cfg, loggers, callbacks, max_epochs=int(train.max_epochs),
                                max_steps=int(train.get("max_steps") or -1))
        trainer.fit(model, datamodule=datamodule)
        save_checkpoint_atomic(trainer, ckpt)
        metrics = {k.split("/", 1)[1]: float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith("train/")}
        metrics.update(steps=int(trainer.global_step), backbone_tensors_loaded=int(n_loaded))
        log_metrics(loggers, {f"irn/{k}": v for k, v in metrics.items()})
    if "loss" in metrics:
        metrics["objective"] = metrics["loss"]
    log.info("train_irn: %s -> %s", metrics, ckpt)
    return metrics
