"""AdvCAM: anti-adversarial climbing (Lee, Kim & Yoon, CVPR 2021), two implementations.

For one image, every present class ``c`` and every scale, the image and its mirror climb
``x^{t+1} = clamp(x^t + ξ·∇L / max|∇L|)`` with (Eq. 3–7)

    L = Σ_views (y_c − Σ_{k≠c} y_k) − λ·Σ M ⊙ |A_t − A_0|,    M = 1[A_t / max A_t > τ],

and the class map is the sum ``A_0 + … + A_{T−1}`` of the attributions met on the way, aggregated
over scales like a plain CAM.

- ``impl="reference"``: the official loop literally — class by class, scale by scale, a batch of
  the two views, Grad-CAM from a second backward pass to the feature map, fp32, and the
  parameters' ``.grad`` filled by every backward as in the official code.
- ``impl="fast"`` (default): all present classes (``chunk_size`` at a time) and both views of a
  scale in one batch, the Grad-CAM map in closed form (no second backward), no parameter
  gradients, the unused last step skipped, optional autocast and channels-last. Each class's climb
  stays independent: gradient normalisation, clamp range, mask and ``L_AD`` are per class.

Not reproduced on purpose: the official loop multiplies every accumulated map by
``mul_for_scale`` (2 when T > 10), which it sets while processing scale 0.5 — the first scale it
visits — and never resets, so every scale gets the same factor; it cancels in the
max-normalisation up to the 1e-5 epsilon.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advcam_pl.advcam import modes
from advcam_pl.advcam.aggregate import aggregate_scales
from advcam_pl.advcam.cam import (
    DEFAULT_SCALES,
    as_class_indices,
    class_maps,
    class_maps_from_features,
    classifier_weight,
    model_device,
)
from advcam_pl.advcam.equations import (
    GRAD_EPS,
    Accumulate,
    Attribution,
    Clamp,
    StepNorm,
    Suppress,
    attribution_map,
    clamp_bounds,
    class_scores,
    climb_step,
    objective_coefficients,
    positive_weight_counts,
    restoring_loss,
    restoring_mask,
    value_range,
)
from advcam_pl.advcam.result import AdvCAMResult, Trajectory
from advcam_pl.advcam.views import ImageInput, flip_pair, original_size, scale_images, scale_steps

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "16": torch.float16,
}


@dataclass(frozen=True)
class ClimbOptions:
    """The keywords of :func:`adv_climb` that shape one scale's climb."""

    step_size: float = 0.08
    lam: float = 7.0
    tau: float = 0.5
    suppress_others: Suppress = True
    attribution: Attribution = "gradcam"
    step_norm: StepNorm = "linf"
    clamp: Clamp = "current"
    accumulate: Accumulate = "before_step"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("attribution", ("gradcam", "cam")),
            ("step_norm", ("linf", "none")),
            ("clamp", ("current", "initial", "none")),
            ("accumulate", ("before_step", "include_last")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.suppress_others not in (True, False, "all", "present"):
            raise ValueError(f"suppress_others must be True, False, 'all' or 'present', got {self.suppress_others!r}")

    def num_maps(self, steps: int) -> int:
        """Maps accumulated for ``steps`` steps: ``x⁰…x^{T−1}`` (official) or ``x⁰…x^T`` (Eq. 4)."""
        return steps + 1 if self.accumulate == "include_last" else steps


@dataclass
class ScaleClimb:
    """One scale's climb of ``n`` classes: ``acc [n, h, w]`` and, if recorded, its history
    ``acc_history [J, n, h, w]`` (acc after each map), ``attribution [J, n, h, w]``, ``score [J, n]``."""

    acc: torch.Tensor
    acc_history: torch.Tensor | None = None
    attribution: torch.Tensor | None = None
    score: torch.Tensor | None = None

    @staticmethod
    def cat(parts: Sequence[ScaleClimb]) -> ScaleClimb:
        """Concatenate chunks of classes."""
        if len(parts) == 1:
            return parts[0]

        def cat(name: str, dim: int):
            values = [getattr(p, name) for p in parts]
            return None if values[0] is None else torch.cat(values, dim)

        return ScaleClimb(cat("acc", 0), cat("acc_history", 1), cat("attribution", 1), cat("score", 1))


class _History:
    """Collects per-map records when a trajectory is asked for."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.acc: list[torch.Tensor] = []
        self.attribution: list[torch.Tensor] = []
        self.score: list[torch.Tensor] = []

    def add(self, acc: torch.Tensor, a: torch.Tensor, score: torch.Tensor) -> None:
        if self.enabled:
            self.acc.append(acc.detach().clone())
            self.attribution.append(a.detach().clone())
            self.score.append(score.detach().clone())

    def result(self, acc: torch.Tensor) -> ScaleClimb:
        if not self.enabled:
            return ScaleClimb(acc)
        return ScaleClimb(acc, torch.stack(self.acc), torch.stack(self.attribution), torch.stack(self.score))


# --------------------------------------------------------------------------------------------
# reference: the official loop, one class and one scale at a time
# --------------------------------------------------------------------------------------------


def _official_gradcam(feats: torch.Tensor, s: torch.Tensor, c: int) -> torch.Tensor:
    """The official ``GradCAM.generate`` for the score ``Σ_views gsp2d(ReLU(S))[:, c]``: ``[2, h, w]``.

    Gradient of the score to the feature map by a second backward pass, channel weights =
    spatial sum of the gradient / number of its positive entries (``gap2d_pos``), then
    ``ReLU(Σ_k F_k·w_k)``. The weights carry no gradient (the official hooks read a plain backward).
    """
    score = F.relu(s)[:, c].sum()
    (grads,) = torch.autograd.grad(score, feats, retain_graph=True)
    weights = grads.sum(dim=(-2, -1), keepdim=True) / ((grads > 0).sum() + GRAD_EPS)
    return F.relu((feats * weights).sum(1))


def _climb_scale_reference(
    model: nn.Module, pair: torch.Tensor, keys: torch.Tensor, steps: int, opts: ClimbOptions, record: bool
) -> ScaleClimb:
    """``pair [2, 3, H, W]`` → :class:`ScaleClimb` for the ``keys [n]``, class by class."""
    weight = classifier_weight(model)
    parts = []
    for c in keys.tolist():
        history = _History(record)
        img = pair.detach().clone()
        x0_bounds = value_range(img[None])
        acc = init_cam = None
        for it in range(opts.num_maps(steps)):
            img.requires_grad_(True)
            feats = model.features(img)  # [2, K, h, w]
            s = class_maps_from_features(feats, weight)  # [2, C, h, w]
            if opts.attribution == "gradcam":
                regions = _official_gradcam(feats, s, c)
            else:
                regions = F.relu(s[:, c])
            regions = regions[0] + regions[1].flip(-1)  # [h, w]
            if it == 0:
                init_cam = regions.detach()
                acc = torch.zeros_like(init_cam)
            acc += regions.detach()
            logit = class_scores(s)  # [2, C]
            history.add(acc[None], regions[None], logit[:, c].mean()[None])
            if it == steps:  # accumulate="include_last": x^T is evaluated, not stepped from
                break

            if opts.suppress_others is True or opts.suppress_others == "all":
                logit_loss = -2 * logit[:, c].sum() + logit.sum()
            elif opts.suppress_others == "present":
                logit_loss = -2 * logit[:, c].sum() + logit[:, keys].sum()
            else:
                logit_loss = -logit[:, c].sum()
            expanded_mask = (regions / regions.max() > opts.tau).float().detach()
            l_ad = torch.sum(torch.abs(regions - init_cam) * expanded_mask)
            loss = -logit_loss - l_ad * opts.lam

            model.zero_grad()
            loss.backward()
            bounds = clamp_bounds(opts.clamp, img[None], x0_bounds)
            img = climb_step(img.detach()[None], img.grad[None], opts.step_size, opts.step_norm, bounds)[0]
        parts.append(history.result(acc[None]))
    model.zero_grad(set_to_none=True)
    return ScaleClimb.cat(parts)


# --------------------------------------------------------------------------------------------
# fast: classes × views in one batch, Grad-CAM in closed form
# --------------------------------------------------------------------------------------------


def _climb_chunk_fast(
    model: nn.Module,
    pair: torch.Tensor,
    keys: torch.Tensor,
    present: torch.Tensor,
    steps: int,
    opts: ClimbOptions,
    record: bool,
    autocast_dtype: torch.dtype | None,
    channels_last: bool,
) -> ScaleClimb:
    """Climb the classes ``keys [m]`` of ``pair [2, 3, H, W]`` together: a batch of ``2m`` images."""
    weight = classifier_weight(model)
    m = keys.shape[0]
    rows = torch.arange(m, device=keys.device)
    n_pos_weights = positive_weight_counts(weight)[keys]  # [m]
    coef = objective_coefficients(keys, present, weight.shape[0], opts.suppress_others)  # [m, C]
    x = pair.detach()[None].repeat(m, 1, 1, 1, 1)  # [m, 2, 3, H, W], class-major
    x0_bounds = value_range(x)
    autocast = (
        torch.autocast(x.device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    history = _History(record)
    num_maps = opts.num_maps(steps)
    acc = a0 = None
    for t in range(num_maps):
        last = t == num_maps - 1  # its map is accumulated; the step from it would never be used
        x.requires_grad_(not last)
        with torch.set_grad_enabled(not last):
            with autocast:
                s = class_maps(model, x.flatten(0, 1).contiguous(memory_format=memory_format))
            s = s.float().unflatten(0, (m, 2))  # [m, 2, C, h, w]
            s_c = s[rows, :, keys]  # [m, 2, h, w]
            a = attribution_map(s_c, n_pos_weights, opts.attribution)  # [m, h, w]
            if t == 0:
                a0 = a.detach()
                acc = torch.zeros_like(a0)
            acc += a.detach()
            y = class_scores(s)  # [m, 2, C]
            history.add(acc, a, y[rows, :, keys].mean(1))
            if last:
                break
            objective = (y * coef[:, None, :]).sum(dim=(1, 2))  # [m]: Σ_views y_c − Σ_{k≠c} y_k
            if opts.lam:
                objective = objective - opts.lam * restoring_loss(a, a0, restoring_mask(a, opts.tau))
            (grad,) = torch.autograd.grad(objective.sum(), x)
        bounds = clamp_bounds(opts.clamp, x, x0_bounds)
        x = climb_step(x.detach(), grad, opts.step_size, opts.step_norm, bounds)
    return history.result(acc)


def _empty_cuda_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _climb_scale_fast(
    model: nn.Module,
    pair: torch.Tensor,
    keys: torch.Tensor,
    steps: int,
    opts: ClimbOptions,
    record: bool,
    chunk_size: int,
    autocast_dtype: torch.dtype | None,
    channels_last: bool,
) -> tuple[ScaleClimb, int]:
    """All ``keys`` of one scale, ``chunk_size`` classes per batch; a CUDA OOM halves the chunk.

    Returns the climb and the chunk size that fitted (for the next scale and image).
    """
    parts: list[ScaleClimb] = []
    start = 0
    while start < keys.shape[0]:
        chunk = keys[start : start + chunk_size]
        try:
            part = _climb_chunk_fast(model, pair, chunk, keys, steps, opts, record, autocast_dtype, channels_last)
        except torch.cuda.OutOfMemoryError:
            if chunk.shape[0] == 1:
                raise
            chunk_size = max(1, chunk.shape[0] // 2)
            log.warning("CUDA out of memory climbing %d classes at once; retrying with chunk_size=%d",
                        chunk.shape[0], chunk_size)
            part = None
        if part is None:  # outside the except block, so the failed attempt's tensors are freed
            _empty_cuda_cache()
            continue
        parts.append(part)
        start += chunk.shape[0]
    return ScaleClimb.cat(parts), chunk_size


# --------------------------------------------------------------------------------------------
# the public function
# --------------------------------------------------------------------------------------------


def parse_autocast_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``None``, a ``torch.dtype`` or one of ``"bf16"``, ``"bfloat16"``, ``"fp16"``, ``"float16"``."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().replace("torch.", "")
    if key in ("null", "none", "", "fp32", "float32", "32"):
        return None
    if key not in AUTOCAST_DTYPES:
        raise ValueError(f"autocast_dtype must be bf16, fp16 or None, got {dtype!r}")
    return AUTOCAST_DTYPES[key]


def trajectory_index(t: int, steps: int, scale: float, accumulate: Accumulate, half_steps: bool) -> int:
    """Row of a scale's acc history that matches entry ``t`` of the main trajectory.

    Entry ``t`` is what a run with ``k`` steps gives (``k = t+1``, or ``t`` with
    ``accumulate="include_last"``); that run's scale ``s`` climbs ``scale_steps(k, s)`` steps,
    a prefix of the longer climb.
    """
    if accumulate == "include_last":
        return scale_steps(t, scale, half_steps)
    return scale_steps(t + 1, scale, half_steps) - 1


def _trajectory(
    climbs: Sequence[ScaleClimb], scales: Sequence[float], steps: int, size: tuple[int, int],
    opts: ClimbOptions, half_steps: bool,
) -> Trajectory:
    main = next((i for i, s in enumerate(scales) if float(s) == 1.0), 0)
    high_res = []
    for t in range(opts.num_maps(steps)):
        rows = [c.acc_history[trajectory_index(t, steps, s, opts.accumulate, half_steps)]
                for c, s in zip(climbs, scales)]
        high_res.append(aggregate_scales(rows, size)[1])
    return Trajectory(
        high_res=torch.stack(high_res),
        attribution=climbs[main].attribution,
        score=climbs[main].score,
        scale=float(scales[main]),
    )


def adv_climb(
    model: nn.Module,
    image: ImageInput,
    classes: torch.Tensor | Sequence[int],
    *,
    steps: int = 27,
    step_size: float = 0.08,
    lam: float = 7.0,
    tau: float = 0.5,
    scales: Sequence[float] = DEFAULT_SCALES,
    size: Sequence[int] | None = None,
    suppress_others: Suppress = True,
    attribution: Attribution = "gradcam",
    step_norm: StepNorm = "linf",
    clamp: Clamp = "current",
    half_steps_at_half_scale: bool = True,
    accumulate: Accumulate = "before_step",
    impl: str = "fast",
    chunk_size: int | None = None,
    autocast_dtype: torch.dtype | str | None = None,
    channels_last: bool = False,
    record_trajectory: bool = False,
) -> AdvCAMResult:
    """AdvCAM of the ``classes`` of one image: multi-scale, flip-merged, max-normalised maps.

    Args:
        model: exposes ``features(x) -> [B, K, h, w]`` and a 1×1 conv ``classifier``
            (weight ``[C, K, 1, 1]``; a bias is ignored, as in the official CAM). Run in eval mode
            and restored afterwards.
        image: a normalised ``[3, H, W]`` tensor (resized per scale on the tensor, see
            :mod:`advcam_pl.advcam.views`) or its pre-scaled versions, one ``[3, h_s, w_s]`` per
            scale (the official PIL path, as ``InferenceDataModule`` makes them).
        classes: 0-based indices of the present classes, ``[n]``.
        steps: ``T`` adversarial iterations. Default 27.
        step_size: ``ξ``. Default 0.08 — with the L∞-normalised step (the paper's text says 0.008).
        lam: ``λ``, weight of the restoring loss ``L_AD``; 0 switches it off. Default 7.
        tau: ``τ``, the mask threshold on ``A_t / max A_t``. Default 0.5.
        scales: image scales. Default ``(1.0, 0.5, 1.5, 2.0)``.
        size: original ``(H, W)``; by default the size of the scale-1.0 image.
        suppress_others: ``True``/``"all"`` subtract the scores of **all** other classes
            (official); ``"present"`` only the other present classes; ``False`` none.
        attribution: ``"gradcam"`` (official: Grad-CAM with positive-count weights, i.e.
            ``ReLU(S_c)·n_b/N⁺`` per view) or ``"cam"`` (the paper: ``ReLU(S_c)``).
        step_norm: ``"linf"`` (official: ``g / max|g|`` over both views) or ``"none"``
            (the paper's raw gradient).
        clamp: ``"current"`` (official: to the min/max of the current iterate), ``"initial"``
            (to those of ``x⁰``) or ``"none"``.
        half_steps_at_half_scale: scale 0.5 runs ``T//2`` steps if ``T > 10``, 5 if
            ``6 ≤ T ≤ 10`` (official); ``False``: ``T`` everywhere.
        accumulate: ``"before_step"`` (official: maps of ``x⁰…x^{T−1}``; ``x^T`` is never
            evaluated) or ``"include_last"`` (the paper's Eq. 4: ``x⁰…x^T``).
        impl: ``"fast"`` or ``"reference"`` (see the module docstring; same results in fp32).
        chunk_size: classes climbed per batch by ``"fast"`` (``None``: all); halved on CUDA OOM.
        autocast_dtype: ``"bf16"``/``"fp16"`` (or a dtype) runs the network under autocast
            (``"fast"`` only); the image, the step and the maps stay fp32.
        channels_last: run the network in channels-last memory format (``"fast"`` only).
        record_trajectory: also return :class:`~advcam_pl.advcam.result.Trajectory`.

    Returns:
        :class:`~advcam_pl.advcam.result.AdvCAMResult`: ``keys [n]`` int64,
        ``cam [n, ⌈H/4⌉, ⌈W/4⌉]``, ``high_res [n, H, W]`` (float32, on the model's device).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    opts = ClimbOptions(step_size=float(step_size), lam=float(lam), tau=float(tau),
                        suppress_others=suppress_others, attribution=attribution,
                        step_norm=step_norm, clamp=clamp, accumulate=accumulate)
    autocast_dtype = parse_autocast_dtype(autocast_dtype)
    if impl == "reference" and (autocast_dtype is not None or channels_last):
        raise ValueError("impl='reference' is the official fp32 loop: no autocast, no channels_last")
    if impl not in ("fast", "reference"):
        raise ValueError(f"impl must be 'fast' or 'reference', got {impl!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")

    device = model_device(model)
    hw = original_size(image, scales, size)
    keys = as_class_indices(classes, device)
    images = scale_images(image, scales)
    n = keys.shape[0]
    if n == 0:
        cam, high_res = aggregate_scales([torch.zeros((0, 1, 1), device=device)], hw)
        return AdvCAMResult(keys=keys, cam=cam, high_res=high_res, chunk_size=chunk_size)

    chunk = chunk_size or n
    climbs = []
    frozen = modes.frozen_parameters(model) if impl == "fast" else nullcontext()
    with modes.eval_mode(model), frozen, modes.channels_last(model, channels_last), torch.enable_grad():
        for scale, img in zip(scales, images):
            pair = flip_pair(img.to(device=device, dtype=torch.float32))  # [2, 3, h_s, w_s]
            n_steps = scale_steps(steps, scale, half_steps_at_half_scale)
            if impl == "reference":
                climbs.append(_climb_scale_reference(model, pair, keys, n_steps, opts, record_trajectory))
            else:
                climb, chunk = _climb_scale_fast(model, pair, keys, n_steps, opts, record_trajectory,
                                                 chunk, autocast_dtype, channels_last)
                climbs.append(climb)
    cam, high_res = aggregate_scales([c.acc for c in climbs], hw)
    trajectory = (_trajectory(climbs, scales, steps, hw, opts, half_steps_at_half_scale)
                  if record_trajectory else None)
    return AdvCAMResult(keys=keys, cam=cam, high_res=high_res, trajectory=trajectory,
                        chunk_size=chunk if impl == "fast" else None)
