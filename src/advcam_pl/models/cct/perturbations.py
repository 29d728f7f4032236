"""The feature perturbations of CCT's auxiliary decoders (official ``models/decoders.py``).

Each function perturbs the encoder output ``z`` ``[B, C, h, w]``; the guided ones also read the
main decoder's prediction on the same batch through a :class:`Guidance` (computed once per batch
and shared by every auxiliary decoder). Defaults are the official hyper-parameters.

Random draws come from the sources the official code uses: numpy for F-Drop's γ, python's
``random`` for the cutout offsets, torch for dropout, noise and VAT's start direction
(``pytorch_lightning.seed_everything`` seeds all three).

Official quirks kept here (switches in brackets):

- F-Noise draws one ``[C, h, w]`` noise tensor for the whole batch and F-Drop one γ per call
  [``per_sample=True`` draws per sample];
- G-Cutout keeps only the contours of more than 50 points after OpenCV's ``CHAIN_APPROX_SIMPLE``
  compression, so rectangular blobs (4 points) and small disks are never cut [``min_points``], and
  the erased box is ``int(0.4·(max−min))`` on each side, 16 % of the box, not 40 % of the area;
- VAT's ``xi = 1e-6`` is below float16 resolution and mostly lost in float32 rounding where
  ``|z| ≳ 1e-2`` [``xi``]; and the probe gradient is normalised as ``g / (‖g‖ + 1e-8)``. With that
  ``xi`` the gradient's norm is ~3e-11 (measured at the official sizes, 512×40×40 features, random
  init), so ``‖r_adv‖`` comes out ~0.3 % of ``eps`` (0.006 instead of 2): the VAT decoders are
  barely perturbed [``norm_floor=0`` divides by ``‖g‖`` alone, giving ``‖r_adv‖ = eps``]. The step runs
  in float32 with ``torch.autograd.grad`` w.r.t. the direction only, so no parameter ``.grad`` is
  touched and it is safe under AMP and DDP (the official ``.backward()`` + ``zero_grad()`` is neither).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from advcam_pl.models.cct.contours import external_contours

Box = tuple[int, int, int, int]  # x_min, y_min, x_max, y_max (inclusive)


class Guidance:
    """What the guided perturbations read from the main decoder's prediction ``pred``
    ``[B, K, H, W]`` (detached): the foreground ``argmax > 0`` ``[B, H, W]`` and, per sample, the
    bounding boxes of the outer contours with more than ``min_points`` points (computed on first use)."""

    def __init__(self, pred: torch.Tensor, min_points: int = 50):
        self.pred = pred.detach()
        self.min_points = int(min_points)

    @cached_property
    def foreground(self) -> torch.Tensor:
        return self.pred.argmax(1) > 0

    @cached_property
    def object_boxes(self) -> list[list[Box]]:
        masks = self.foreground.to(torch.uint8).cpu().numpy()
        return [[c.bbox for c in external_contours(m) if len(c) > self.min_points] for m in masks]


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B, H, W]`` (bool or float) → float ``[B, 1, h, w]`` by nearest neighbour, as the official
    ``F.interpolate(mode="nearest")``."""
    return F.interpolate(mask[:, None].float(), size=size, mode="nearest")


def context_mask(z: torch.Tensor, guide: Guidance) -> torch.Tensor:
    """Con-Msk: ``z · m`` with ``m`` the predicted foreground at ``z``'s size — keeps the objects,
    removes their context."""
    return z * resize_mask(guide.foreground, z.shape[-2:]).to(z.dtype)


def object_mask(z: torch.Tensor, guide: Guidance) -> torch.Tensor:
    """Obj-Msk: ``z · (1 − m)`` — keeps the context, removes the objects."""
    return z * (1 - resize_mask(guide.foreground, z.shape[-2:])).to(z.dtype)


def cutout_mask(
    boxes: list[list[Box]], size: tuple[int, int], erase: float = 0.4, rng: random.Random | None = None
) -> torch.Tensor:
    """G-Cutout's keep mask ``[B, H, W]`` float at the prediction's size ``(H, W)``: ones, with one
    ``int(erase·bh) × int(erase·bw)`` zero box per object box at a random offset inside it
    (``bw = x_max − x_min``, as the official code measures it)."""
    draw = rng or random
    masks = np.ones((len(boxes), *size), dtype=np.float32)
    for mask, sample_boxes in zip(masks, boxes):
        for x_min, y_min, x_max, y_max in sample_boxes:
            box_w, box_h = x_max - x_min, y_max - y_min
            left = x_min + draw.randint(0, int(box_w * (1 - erase)))
            top = y_min + draw.randint(0, int(box_h * (1 - erase)))
            mask[top : top + int(box_h * erase), left : left + int(box_w * erase)] = 0
    return torch.from_numpy(masks)


def guided_cutout(z: torch.Tensor, guide: Guidance, erase: float = 0.4) -> torch.Tensor:
    """G-Cutout: erase part of each (large enough) predicted object from ``z``."""
    keep = cutout_mask(guide.object_boxes, tuple(guide.pred.shape[-2:]), erase)
    return z * resize_mask(keep.to(z.device), z.shape[-2:]).to(z.dtype)


def feature_drop(
    z: torch.Tensor, gamma_range: tuple[float, float] = (0.7, 0.9), per_sample: bool = False
) -> torch.Tensor:
    """F-Drop: with ``a = mean_c z`` ``[B, 1, h, w]``, zero the positions where
    ``a ≥ γ · max_hw a`` (per sample), γ ~ U(gamma_range): the most activated region goes."""
    attention = z.mean(1, keepdim=True)
    max_val = attention.flatten(1).max(1).values.view(-1, 1, 1, 1)
    if per_sample:
        gamma = torch.from_numpy(np.random.uniform(*gamma_range, size=z.shape[0])).view(-1, 1, 1, 1)
        gamma = gamma.to(z.device, z.dtype)
    else:
        gamma = float(np.random.uniform(*gamma_range))
    return z * (attention < max_val * gamma).to(z.dtype)


def feature_noise(z: torch.Tensor, uniform_range: float = 0.3, per_sample: bool = False) -> torch.Tensor:
    """F-Noise: ``z + z · N``, N ~ U(−r, r) of shape ``[C, h, w]`` (``[B, C, h, w]`` if ``per_sample``)."""
    shape = z.shape if per_sample else (1, *z.shape[1:])
    noise = (torch.rand(shape, device=z.device, dtype=z.dtype) * 2 - 1) * uniform_range
    return z + z * noise


def l2_normalize(d: torch.Tensor, floor: float = 1e-8) -> torch.Tensor:
    """Each sample of ``d`` ``[B, ...]`` divided by (its L2 norm over all other dims + ``floor``);
    ``floor=0``: by the norm alone (a zero sample stays zero)."""
    norm = d.flatten(1).norm(dim=1).view(-1, *([1] * (d.dim() - 1)))
    return d / (norm + floor) if floor > 0 else d / norm.clamp_min(torch.finfo(d.dtype).tiny)


def vat_perturbation(
    z: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    xi: float = 1e-6,
    eps: float = 2.0,
    iterations: int = 1,
    norm_floor: float = 1e-8,
) -> torch.Tensor:
    """I-VAT's adversarial direction ``r_adv`` (same shape as ``z``): ``eps · g / (‖g‖ + norm_floor)``
    per sample, so ``‖r_adv‖₂ = eps`` unless ``‖g‖`` is not large against ``norm_floor`` (see the
    module doc: with the official ``xi`` it is not).

    ``head`` is the VAT decoder's own head. Power iteration from a random direction ``d``: ``g`` is
    the gradient w.r.t. ``d`` of ``KL(softmax(head(z)) ‖ softmax(head(z + xi·d)))`` (``batchmean``),
    normalised. Runs in float32 with autocast off; ``z`` is detached, and only ``d`` gets a
    gradient (``torch.autograd.grad``), so no parameter's ``.grad`` is created or changed.
    """
    with torch.autocast(device_type=z.device.type, enabled=False), torch.enable_grad():
        z0 = z.detach().float()
        with torch.no_grad():
            target = F.softmax(head(z0), dim=1)
        d = l2_normalize(torch.rand_like(z0) - 0.5)
        for _ in range(iterations):
            d.requires_grad_(True)
            log_p = F.log_softmax(head(z0 + xi * d), dim=1)
            distance = F.kl_div(log_p, target, reduction="batchmean")
            (grad,) = torch.autograd.grad(distance, d)
            d = l2_normalize(grad.detach(), norm_floor)
    return (eps * d).to(z.dtype)
