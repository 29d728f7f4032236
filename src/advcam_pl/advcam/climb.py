"""AdvCAM: anti-adversarial climbing (Lee, Kim & Yoon, CVPR 2021), two implementations.

For one image, every present class ``c`` and every scale, the image and its mirror climb
``x^{t+1} = clamp(x^t + ξ·∇L / max|∇L|)`` with (Eq. 3–7)

    L = Σ_views (y_c − Σ_{k≠c} y_k) − λ·Σ M ⊙ |A_t − A_0|,    M = 1[A_t / max A_t > τ],

and the class map is the sum ``A_0 + … + A_{T−1}`` of the attributions met on the way, aggregated
over scales like a plain CAM.

- ``impl="reference"``: the official loop literally — image by image, class by class, scale by
  scale, a batch of the two views, Grad-CAM from a second backward pass to the feature map, fp32,
  and the parameters' ``.grad`` filled by every backward as in the official code.
- ``impl="fast"`` (default): at each scale, every (image, class) climb whose image has the same size
  there — all classes of one image, or of many images (:func:`adv_climb_batch`) — and both views in
  one batch (``chunk_size`` climbs at a time); the Grad-CAM map in closed form (no second backward),
  no parameter gradients, the unused last step skipped, optional autocast, TF32, channels-last and
  ``torch.compile``. Every climb stays independent: gradient normalisation, clamp range, mask and
  ``L_AD`` are per (image, class), and images of different sizes never share a batch (no padding).

Not reproduced on purpose: the official loop multiplies every accumulated map by
``mul_for_scale`` (2 when T > 10), which it sets while processing scale 0.5 — the first scale it
visits — and never resets, so every scale gets the same factor; it cancels in the
max-normalisation up to the 1e-5 epsilon.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, fields, replace
from typing import Literal

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

Impl = Literal["fast", "reference"]

AUTOCAST_DTYPES = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "16": torch.float16,
}


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


@dataclass(frozen=True)
class ClimbOptions:
    """AdvCAM's knobs, the one list of them: :func:`adv_climb` and :func:`adv_climb_batch` take
    them as keywords or as ``options=``, ``conf/cam/advcam.yaml`` instantiates this class
    (``cam.climb``) and the make_cam stage passes it through. Each official departure from the
    paper's text is a field whose default is the official choice.

    Attributes:
        steps: ``T`` adversarial iterations. Default 27.
        step_size: ``ξ``. Default 0.08 — with the L∞-normalised step (the paper's text says 0.008).
        lam: ``λ``, weight of the restoring loss ``L_AD``; 0 switches it off. Default 7.
        tau: ``τ``, the mask threshold on ``A_t / max A_t``. Default 0.5.
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
        chunk_size: (image, class) climbs per batch of ``"fast"`` (``None``: all those of a
            scale and size); halved on CUDA out-of-memory.
        autocast_dtype: ``"bf16"``/``"fp16"`` (or a dtype) runs the network under autocast
            (``"fast"`` only); the image, the step and the maps stay fp32.
        channels_last: run the network in channels-last memory format (``"fast"`` only).
        tf32: ``True`` TF32 for CUDA convolutions and matmuls, ``False`` strict IEEE fp32,
            ``None`` torch's setting as it is (its default: TF32 convolutions). No effect on CPU.
        compile: ``torch.compile`` the network's forward (and so its input-gradient backward),
            the cost of every climbing step (``"fast"`` only; the first call of each input
            shape compiles).
    """

    steps: int = 27
    step_size: float = 0.08
    lam: float = 7.0
    tau: float = 0.5
    suppress_others: Suppress = True
    attribution: Attribution = "gradcam"
    step_norm: StepNorm = "linf"
    clamp: Clamp = "current"
    half_steps_at_half_scale: bool = True
    accumulate: Accumulate = "before_step"
    impl: Impl = "fast"
    chunk_size: int | None = None
    autocast_dtype: torch.dtype | str | None = None
    channels_last: bool = False
    tf32: bool | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        for name, cast in (("steps", int), ("step_size", float), ("lam", float), ("tau", float)):
            object.__setattr__(self, name, cast(getattr(self, name)))
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        for name, allowed in (
            ("attribution", ("gradcam", "cam")),
            ("step_norm", ("linf", "none")),
            ("clamp", ("current", "initial", "none")),
            ("accumulate", ("before_step", "include_last")),
            ("impl", ("fast", "reference")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.suppress_others not in (True, False, "all", "present"):
            raise ValueError(f"suppress_others must be True, False, 'all' or 'present', got {self.suppress_others!r}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {self.chunk_size}")
        parse_autocast_dtype(self.autocast_dtype)  # a ValueError for an unknown dtype
        if self.tf32 not in (None, True, False):
            raise ValueError(f"tf32 must be true, false or null, got {self.tf32!r}")
        if self.impl == "reference" and (self.autocast is not None or self.channels_last or self.compile):
            raise ValueError("impl='reference' is the official fp32 loop: no autocast, no channels_last, no compile")

    @classmethod
    def build(cls, options: ClimbOptions | None = None, **overrides) -> ClimbOptions:
        """``options`` (default: the official settings) with the keyword ``overrides`` applied;
        an unknown keyword is a ``TypeError`` that names it and lists the options."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise TypeError(f"unknown AdvCAM option(s) {unknown}; the options are {names}")
        if options is None:
            return cls(**overrides)
        if not isinstance(options, ClimbOptions):
            raise TypeError(f"options must be a ClimbOptions, got {type(options).__name__}")
        return replace(options, **overrides) if overrides else options

    @property
    def autocast(self) -> torch.dtype | None:
        """``autocast_dtype`` as a ``torch.dtype`` (``None``: fp32)."""
        return parse_autocast_dtype(self.autocast_dtype)

    def num_maps(self, steps: int | None = None) -> int:
        """Maps accumulated for ``steps`` (default ``T``) steps: ``x⁰…x^{T−1}`` (official) or
        ``x⁰…x^T`` (Eq. 4)."""
        steps = self.steps if steps is None else steps
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

    def rows(self, index: slice) -> ScaleClimb:
        """The climbs ``index`` of the class axis."""

        def take(value: torch.Tensor | None, dim: int):
            return None if value is None else value[(slice(None),) * dim + (index,)]

        return ScaleClimb(take(self.acc, 0), take(self.acc_history, 1), take(self.attribution, 1),
                          take(self.score, 1))


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
# fast: (image, class) climbs × views in one batch, Grad-CAM in closed form
# --------------------------------------------------------------------------------------------

_compiled_class_maps = None


def _network(compile: bool):
    """``class_maps`` itself, or (``compile=True``) one ``torch.compile`` of it shared by all calls."""
    global _compiled_class_maps
    if not compile:
        return class_maps
    if _compiled_class_maps is None:
        _compiled_class_maps = torch.compile(class_maps)
    return _compiled_class_maps


def _climb_chunk_fast(
    model: nn.Module,
    pairs: torch.Tensor,
    keys: torch.Tensor,
    coef: torch.Tensor,
    steps: int,
    opts: ClimbOptions,
    record: bool,
) -> ScaleClimb:
    """Climb ``m`` independent (image, class) pairs together: a batch of ``2m`` images.

    Args:
        pairs: ``[m, 2, 3, H, W]`` each climb's image and mirror (one image may appear in
            several rows, one per class).
        keys: ``[m]`` the class each row climbs.
        coef: ``[m, C]`` the objective's class coefficients of each row
            (:func:`~advcam_pl.advcam.equations.objective_coefficients`).
    """
    weight = classifier_weight(model)
    m = keys.shape[0]
    rows = torch.arange(m, device=keys.device)
    n_pos_weights = positive_weight_counts(weight)[keys]  # [m]
    x = pairs.detach()
    x0_bounds = value_range(x)
    autocast = torch.autocast(x.device.type, dtype=opts.autocast) if opts.autocast is not None else nullcontext()
    memory_format = torch.channels_last if opts.channels_last else torch.contiguous_format
    network = _network(opts.compile)
    history = _History(record)
    num_maps = opts.num_maps(steps)
    acc = a0 = None
    for t in range(num_maps):
        last = t == num_maps - 1  # its map is accumulated; the step from it would never be used
        x.requires_grad_(not last)
        with torch.set_grad_enabled(not last):
            with autocast:
                s = network(model, x.flatten(0, 1).contiguous(memory_format=memory_format))
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
    pairs: dict[int, torch.Tensor],
    keys: dict[int, torch.Tensor],
    coefs: dict[int, torch.Tensor],
    steps: int,
    opts: ClimbOptions,
    record: bool,
    chunk_size: int | None,
) -> tuple[dict[int, ScaleClimb], int | None]:
    """Every (image, class) climb of one scale: ``pairs[i] [2, 3, h_i, w_i]``, ``keys[i] [n_i]``,
    ``coefs[i] [n_i, C]`` per image ``i``.

    Climbs of images with the same size here share batches of at most ``chunk_size`` (``None``:
    all of them); a CUDA out-of-memory halves the batch and retries. Returns one
    :class:`ScaleClimb` per image and the chunk size that fitted (``None`` if none was needed).
    """
    by_size: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (h, w) → [(image, class row)]
    for i, pair in pairs.items():
        by_size.setdefault(tuple(pair.shape[-2:]), []).extend((i, j) for j in range(keys[i].shape[0]))
    pieces: dict[int, list[ScaleClimb]] = {i: [] for i in pairs}
    for rows in by_size.values():
        start = 0
        while start < len(rows):
            chunk = rows[start : start + (chunk_size or len(rows))]
            try:
                part = _climb_chunk_fast(
                    model,
                    torch.stack([pairs[i] for i, _ in chunk]),
                    torch.stack([keys[i][j] for i, j in chunk]),
                    torch.stack([coefs[i][j] for i, j in chunk]),
                    steps, opts, record,
                )
            except torch.cuda.OutOfMemoryError:
                if len(chunk) == 1:
                    raise
                chunk_size = max(1, len(chunk) // 2)
                log.warning("CUDA out of memory climbing %d (image, class) pairs at once; retrying with "
                            "chunk_size=%d", len(chunk), chunk_size)
                part = None
            if part is None:  # outside the except block, so the failed attempt's tensors are freed
                _empty_cuda_cache()
                continue
            row = 0
            while row < len(chunk):  # one image's rows are consecutive
                image = chunk[row][0]
                end = row
                while end < len(chunk) and chunk[end][0] == image:
                    end += 1
                pieces[image].append(part.rows(slice(row, end)))
                row = end
            start += len(chunk)
    return {i: ScaleClimb.cat(p) for i, p in pieces.items()}, chunk_size


# --------------------------------------------------------------------------------------------
# the public functions
# --------------------------------------------------------------------------------------------


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
    climbs: Sequence[ScaleClimb], scales: Sequence[float], size: tuple[int, int], opts: ClimbOptions
) -> Trajectory:
    main = next((i for i, s in enumerate(scales) if float(s) == 1.0), 0)
    high_res = []
    for t in range(opts.num_maps()):
        rows = [c.acc_history[trajectory_index(t, opts.steps, s, opts.accumulate, opts.half_steps_at_half_scale)]
                for c, s in zip(climbs, scales)]
        high_res.append(aggregate_scales(rows, size)[1])
    return Trajectory(
        high_res=torch.stack(high_res),
        attribution=climbs[main].attribution,
        score=climbs[main].score,
        scale=float(scales[main]),
    )


def adv_climb_batch(
    model: nn.Module,
    images: Sequence[ImageInput],
    classes: Sequence[torch.Tensor | Sequence[int]],
    options: ClimbOptions | None = None,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    sizes: Sequence[Sequence[int] | None] | None = None,
    record_trajectory: bool = False,
    **kwargs,
) -> list[AdvCAMResult]:
    """AdvCAM of several images at once: one :class:`AdvCAMResult` per image, each equal to what
    :func:`adv_climb` gives for that image alone (to float summation order).

    With ``impl="fast"`` the (image, class) climbs of all images whose scaled sizes agree share
    one batch per scale (see :func:`_climb_scale_fast`); images of other sizes climb in their own
    batches, images without classes get empty maps. Arguments as :func:`adv_climb`, one entry of
    ``images``, ``classes`` and ``sizes`` per image.
    """
    opts = ClimbOptions.build(options, **kwargs)
    images = list(images)
    if len(classes) != len(images):
        raise ValueError(f"{len(images)} images but {len(classes)} class lists")
    sizes = [None] * len(images) if sizes is None else list(sizes)
    if len(sizes) != len(images):
        raise ValueError(f"{len(images)} images but {len(sizes)} sizes")

    device = model_device(model)
    hws = [original_size(img, scales, size) for img, size in zip(images, sizes)]
    keys = [as_class_indices(c, device) for c in classes]
    active = [i for i, k in enumerate(keys) if k.numel()]
    climbs: dict[int, list[ScaleClimb]] = {i: [] for i in active}
    fast = opts.impl == "fast"
    chunk = opts.chunk_size
    if active:
        scaled = {i: scale_images(images[i], scales) for i in active}
        num_classes = classifier_weight(model).shape[0]
        coefs = {i: objective_coefficients(keys[i], keys[i], num_classes, opts.suppress_others) for i in active}
        with (modes.eval_mode(model), modes.frozen_parameters(model) if fast else nullcontext(),
              modes.channels_last(model, opts.channels_last), modes.tf32(opts.tf32), torch.enable_grad()):
            for s, scale in enumerate(scales):
                pairs = {i: flip_pair(scaled[i][s].to(device=device, dtype=torch.float32)) for i in active}
                n_steps = scale_steps(opts.steps, scale, opts.half_steps_at_half_scale)
                if fast:
                    done, chunk = _climb_scale_fast(model, pairs, {i: keys[i] for i in active}, coefs,
                                                    n_steps, opts, record_trajectory, chunk)
                else:
                    done = {i: _climb_scale_reference(model, pairs[i], keys[i], n_steps, opts, record_trajectory)
                            for i in active}
                for i in active:
                    climbs[i].append(done[i])

    chunk = chunk if fast else None
    results = []
    for i, hw in enumerate(hws):
        if i not in climbs:
            cam, high_res = aggregate_scales([torch.zeros((0, 1, 1), device=device)], hw)
            results.append(AdvCAMResult(keys=keys[i], cam=cam, high_res=high_res, chunk_size=chunk))
            continue
        cam, high_res = aggregate_scales([c.acc for c in climbs[i]], hw)
        trajectory = _trajectory(climbs[i], scales, hw, opts) if record_trajectory else None
        results.append(AdvCAMResult(keys=keys[i], cam=cam, high_res=high_res, trajectory=trajectory,
                                    chunk_size=chunk))
    return results


def adv_climb(
    model: nn.Module,
    image: ImageInput,
    classes: torch.Tensor | Sequence[int],
    options: ClimbOptions | None = None,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    size: Sequence[int] | None = None,
    record_trajectory: bool = False,
    **kwargs,
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
        options: a :class:`ClimbOptions` (default: the official settings).
        scales: image scales. Default ``(1.0, 0.5, 1.5, 2.0)``.
        size: original ``(H, W)``; by default the size of the scale-1.0 image.
        record_trajectory: also return :class:`~advcam_pl.advcam.result.Trajectory`.
        **kwargs: any field of :class:`ClimbOptions` (``steps=27``, ``lam=7.0``, ``tau=0.5``,
            ``impl="fast"``, ``autocast_dtype="bf16"``, ...), applied over ``options``; an
            unknown keyword is a ``TypeError`` naming it.

    Returns:
        :class:`~advcam_pl.advcam.result.AdvCAMResult`: ``keys [n]`` int64,
        ``cam [n, ⌈H/4⌉, ⌈W/4⌉]``, ``high_res [n, H, W]`` (float32, on the model's device).
    """
    return adv_climb_batch(model, [image], [classes], options, scales=scales, sizes=[size],
                           record_trajectory=record_trajectory, **kwargs)[0]
