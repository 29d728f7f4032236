"""Checkpoints written like every other stage output: under a temporary name, then renamed."""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl


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
