"""CCT's losses and their ramp-up (official ``models/model.py:85-153``, ``utils/losses.py``,
``utils/ramps.py``).

``L = L_s + w_u(t)·L_u + w_w(t)·L_w``:

- ``L_s``: cross-entropy of the main decoder on the labelled batch (temperature T = 1, 255 ignored);
- ``L_u``: mean over the K auxiliary decoders of ``MSE(softmax(aux_k), softmax(main))`` on the
  unlabelled/weak batch, the main decoder's output detached (it gets no gradient from ``L_u``);
  ⚠ ``F.mse_loss(reduction="mean")`` averages over B·K·H·W, i.e. the per-pixel squared L2 distance
  divided by the class count (kept; ``mse_reduction="sum_classes"`` sums over classes instead);
- ``L_w``: mean over the auxiliary decoders of their cross-entropy with the weak labels (255
  ignored). ⚠ The main decoder never sees the weak labels; they reach it only through the shared
  encoder (kept; the module's ``weak_loss_on_main`` switch adds the main decoder's term);
- ``w_u(t) = unsupervised_w · exp(−5 (1 − min(t, R)/R)²)``, ``w_w(t) = weakly_loss_w · w_u(t) /
  unsupervised_w``, with ``t`` the 0-based iteration and ``R = int(ramp_up · epochs) · iters_per_epoch``
  (whole epochs: ``int(0.1 · 80) · 912 = 7,296``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def sigmoid_rampup(step: float, length: float) -> float:
    """``exp(−5 (1 − clip(step, 0, length)/length)²)``; 1 when ``length`` is 0."""
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(step, 0.0), length) / length
    return math.exp(-5.0 * phase * phase)


def rampup_length(ramp_up: float, epochs: int, iters_per_epoch: int) -> int:
    """Ramp-up iterations as the official code counts them: ``int(ramp_up · epochs) · iters_per_epoch``."""
    return int(ramp_up * epochs) * int(iters_per_epoch)


def loss_weights(step: int, length: int, unsupervised_w: float = 30.0, weakly_loss_w: float = 0.4) -> tuple[float, float]:
    """``(w_u, w_w)`` at iteration ``step`` (0-based)."""
    ramp = sigmoid_rampup(step, length)
    return unsupervised_w * ramp, weakly_loss_w * ramp


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``CE(logits / T, labels)`` averaged over the pixels not labelled 255.
    ``logits`` ``[B, K, H, W]``, ``labels`` int64 ``[B, H, W]``."""
    return F.cross_entropy(logits / temperature, labels, ignore_index=IGNORE_INDEX)


def softmax_mse(aux: torch.Tensor, target_prob: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``MSE(softmax(aux), target_prob)``: ``"mean"`` over all B·K·H·W elements (official) or
    ``"sum_classes"`` (squared L2 over the classes, mean over pixels)."""
    sq = (F.softmax(aux, dim=1) - target_prob) ** 2
    if reduction == "mean":
        return sq.mean()
    if reduction == "sum_classes":
        return sq.sum(1).mean()
    raise ValueError(f"mse_reduction must be 'mean' or 'sum_classes', got {reduction!r}")


def unsupervised_loss(
    aux_outputs: Sequence[torch.Tensor], main_output: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """``(1/K) Σ_k MSE(softmax(aux_k), softmax(main).detach())``; all ``[B, K, H, W]``."""
    target = F.softmax(main_output.detach(), dim=1)
    return torch.stack([softmax_mse(a, target, reduction) for a in aux_outputs]).mean()


def weak_loss(aux_outputs: Sequence[torch.Tensor], weak_labels: torch.Tensor) -> torch.Tensor:
    """``(1/K) Σ_k CE(aux_k, weak_labels)`` (255 ignored); ``weak_labels`` int64 ``[B, H, W]``.

    A batch whose weak labels are all 255 gives 0 (not NaN).
    """
    if not (weak_labels != IGNORE_INDEX).any():
        return aux_outputs[0].sum() * 0.0
    return torch.stack([F.cross_entropy(a, weak_labels, ignore_index=IGNORE_INDEX) for a in aux_outputs]).mean()
