"""Stage train_irn: train IRN's boundary and displacement branches on the IR labels.

Reads the images of ``cfg.data.train_list`` and ``cfg.artifacts.ir_label_dir``; writes the Lightning
checkpoint ``cfg.artifacts.irn_ckpt`` (atomically; its frozen backbone included). Module kwargs
``cfg.irn.module``, training settings ``cfg.irn.train``. The frozen backbone starts from
``cfg.irn.module.pretrained`` (ImageNet, official) or, with ``cfg.irn.init_from_cam``, from the
trained CAM classifier ``cfg.artifacts.cam_ckpt`` (no ImageNet weights offline: tests, demo).
After training, the mean displacement over ``cfg.data.infer_list`` is stored in the model.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from advcam_pl.data.affinity import AffinityDataModule
from advcam_pl.models.irn import IRN
from advcam_pl.pipeline.common import build_trainer, data_root, log_metrics, seed_everything, stage_loggers

log = logging.getLogger(__name__)


def is_done(cfg: DictConfig) -> bool:
    return Path(cfg.artifacts.irn_ckpt).is_file()


class MeanShiftCallback(pl.Callback):
    """At the end of training, ``mean_shift.running_mean`` ← the mean of the per-batch mean raw
    displacements over the inference images (IRN ``train_irn.py``), sharded over ranks."""

    def __init__(self, datamodule: AffinityDataModule):
        self.datamodule = datamodule

    def on_train_end(self, trainer: pl.Trainer, pl_module: IRN) -> None:
        loader = self.datamodule.mean_shift_dataloader(trainer.global_rank, trainer.world_size)
        was_training = pl_module.training
        pl_module.eval()
        total, count = pl_module.displacement_sum(loader)
        pl_module.train(was_training)
        stats = torch.cat([total, torch.tensor([float(count)], device=total.device)])
        stats = trainer.strategy.reduce(stats, reduce_op="sum")
        if stats[2] > 0:
            pl_module.mean_shift.running_mean.copy_(stats[:2] / stats[2])
        log.info("train_irn: mean displacement %s over %d batches", stats[:2].tolist(), int(stats[2]))


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
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    with stage_loggers(cfg, "train_irn") as loggers:
        trainer = build_trainer(cfg, loggers, [MeanShiftCallback(datamodule)], max_epochs=int(train.max_epochs),
                                max_steps=int(train.get("max_steps") or -1))
        trainer.fit(model, datamodule=datamodule)
        tmp = ckpt.with_name(f".{ckpt.name}.tmp")
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, ckpt)
        metrics = {k.split("/", 1)[1]: float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith("train/")}
        metrics.update(steps=int(trainer.global_step), backbone_tensors_loaded=int(n_loaded))
        log_metrics(loggers, {f"irn/{k}": v for k, v in metrics.items()})
    if "loss" in metrics:
        metrics["objective"] = metrics["loss"]
    log.info("train_irn: %s -> %s", metrics, ckpt)
    return metrics
