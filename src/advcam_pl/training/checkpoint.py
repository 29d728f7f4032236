"""Checkpoints written like every other stage output: under a temporary name, then renamed; and the
resumable fit of the training stages (:func:`fit_resumable`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytorch_lightning as pl

log = logging.getLogger(__name__)


def save_checkpoint_atomic(trainer: pl.Trainer, path: str | os.PathLike, weights_only: bool = False) -> Path:
    """``trainer.save_checkpoint`` to ``.<name>.tmp`` beside ``path``, then rename it to ``path``.

    Every rank calls it (the strategy lets rank 0 write); rank 0 renames, and all ranks wait at a
    barrier until the file is in place, so no rank moves on (to a stage that reads it, or to
    ``is_done``) before it exists. An existing ``path`` is therefore always a complete checkpoint.
    ``weights_only``: weights and hyper-parameters, without optimiser and loop state.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # one name for all ranks: the strategy writes it once
    trainer.save_checkpoint(tmp, weights_only=weights_only)
    if trainer.is_global_zero:
        os.replace(tmp, path)
    trainer.strategy.barrier("save_checkpoint_atomic")
    return path


def progress_path(ckpt: str | os.PathLike) -> Path:
    """Where a training stage keeps its progress checkpoint: ``<ckpt stem>.progress.ckpt`` beside ``ckpt``."""
    ckpt = Path(ckpt)
    return ckpt.with_name(f"{ckpt.stem}.progress.ckpt")


def fit_resumable(trainer: pl.Trainer, model: pl.LightningModule, datamodule: pl.LightningDataModule,
                  ckpt: str | os.PathLike) -> Path:
    """``trainer.fit``, resumed from :func:`progress_path` when a killed run left one there (written by
    :class:`~advcam_pl.training.callbacks.ProgressCheckpoint`); then the final weights and
    hyper-parameters at ``ckpt`` (atomic) and the progress file deleted."""
    progress = progress_path(ckpt)
    resume = str(progress) if progress.is_file() else None
    if resume:
        log.info("resuming from %s", resume)
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
    save_checkpoint_atomic(trainer, ckpt, weights_only=True)
    if trainer.is_global_zero and progress.is_file():
        progress.unlink()
    return Path(ckpt)
