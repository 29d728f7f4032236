"""The polynomial learning-rate schedule of every network here, written once.

``lr_k = lr_0 · (1 − s·⌊k/s⌋ / T) ** power`` for optimiser step ``k`` (0-based), ``T`` steps in all,
the decay applied every ``s`` steps (``interval``); after the last step of the schedule the rate
stays where it was. The two official codes this reproduces differ only in ``s``:

- CAM classifier and IRN (AdvCAM reuses IRN's ``torchutils.PolyOptimizer``): the factor
  ``(1 − k/T) ** 0.9`` is set before every step ``k < T`` and left alone afterwards → ``s = 1``.
- DeepLab-v2 (kazuto1011/deeplab-pytorch, which AdvCAM's README points to): ``PolynomialLR`` with
  ``step_size = LR_DECAY = 10`` sets ``(1 − i/T) ** 0.9`` after iterations ``i = 10, 20, …`` → ``s = 10``.
  (DeepLab-v2's own Caffe solver, ``lr_policy: "poly"``, decays every iteration: ``s = 1``.)

Each network's config names its ``poly_interval``; the modules build the scheduler with
:func:`poly_schedule`.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch


def poly_factor(step: int, max_steps: int, power: float = 0.9, interval: int = 1) -> float:
    """The learning-rate multiplier of optimiser step ``step`` (0-based) of ``max_steps``:
    ``(1 − interval·⌊min(step, max_steps − 1)/interval⌋ / max_steps) ** power``."""
    if max_steps < 1 or interval < 1:
        raise ValueError(f"poly schedule needs max_steps >= 1 and interval >= 1, got {max_steps}, {interval}")
    decayed = min(int(step), max_steps - 1) // interval * interval
    return (1.0 - decayed / max_steps) ** power


def poly_schedule(optimizer: torch.optim.Optimizer, max_steps: float, power: float = 0.9,
                  interval: int = 1) -> dict:
    """Lightning's ``lr_scheduler`` entry for :func:`poly_factor`, stepped after every optimiser step.

    ``max_steps`` is the schedule length ``T`` (a module's ``max_steps`` or the trainer's
    ``estimated_stepping_batches``); an infinite or non-positive length is an error.
    """
    if not math.isfinite(max_steps) or max_steps <= 0:
        raise ValueError(f"the poly learning-rate schedule needs a finite length, got {max_steps}: set "
                         "max_steps or max_epochs")
    total = int(max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: poly_factor(k, total, power, interval))
    return {"scheduler": scheduler, "interval": "step"}


def schedule_length(module: pl.LightningModule) -> float:
    """``T`` of a module's schedule: its ``max_steps`` hyper-parameter when set, else the optimiser
    steps of the fit (``trainer.estimated_stepping_batches``: epochs, accumulation and devices included)."""
    explicit = module.hparams.get("max_steps")
    if explicit:
        return explicit
    if module._trainer is None:
        raise ValueError(f"{type(module).__name__}: the poly schedule needs max_steps or a trainer")
    return module.trainer.estimated_stepping_batches
