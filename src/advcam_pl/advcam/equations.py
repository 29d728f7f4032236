"""The pieces of anti-adversarial climbing (paper Eq. 3–7), batched over a leading class axis.

Shapes: ``m`` classes climbed together, each with two views (the image and its mirror); ``C``
classes of the classifier; ``h × w`` the stride-16 grid. Each function notes where the official
code departs from the paper's text; those choices are keywords of
:func:`advcam_pl.advcam.adv_climb`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from advcam_pl.advcam.aggregate import merge_views

Attribution = Literal["gradcam", "cam"]
StepNorm = Literal["linf", "none"]
Clamp = Literal["current", "initial", "none"]
Accumulate = Literal["before_step", "include_last"]
Suppress = bool | Literal["all", "present"]

GRAD_EPS = 1e-12


def positive_weight_counts(weight: torch.Tensor) -> torch.Tensor:
    """``[C, K, 1, 1]`` classifier weight → ``[C]`` number of channels with ``W[c, k] > 0``."""
    return (weight.detach().flatten(1) > 0).sum(1)


def attribution_map(
    s_c: torch.Tensor, n_pos_weights: torch.Tensor, kind: Attribution = "gradcam"
) -> torch.Tensor:
    """The attribution ``A_t`` of the target class, views merged: ``[m, 2, h, w]`` → ``[m, h, w]``.

    Args:
        s_c: raw class maps ``S[:, c]`` of each class's two views, ``[m, 2, h, w]``.
        n_pos_weights: ``[m]`` number of channels ``k`` with ``W[c, k] > 0`` (Grad-CAM only).
        kind: ``"gradcam"`` (official) or ``"cam"`` (the paper's CAM: ``ReLU(S[:, c])``).

    The official code attributes with Grad-CAM whose channel weights are the spatial *sum* of the
    gradient divided by the number of its *positive* entries (``gap2d_pos``). For a linear 1×1
    head and the score ``Σ_views Σ_ij ReLU(S[b, c, i, j])`` the gradient at channel ``k`` is
    ``W[c, k]·1[S[b, c] > 0]``, so the weights are ``W[c, k]·n_b / N⁺`` with ``n_b`` the positive
    entries of ``S[b, c]`` and ``N⁺ = #{k: W[c, k] > 0}·(n_0 + n_1)``, and the map is
    ``ReLU(S[b, c])·n_b / N⁺`` — no second backward pass needed. The scale is a count, so it
    carries no gradient, as in the official code (its weights come from a detached backward).
    """
    maps = F.relu(s_c)
    if kind == "gradcam":
        n_b = (s_c > 0).flatten(2).sum(-1).to(maps.dtype)  # [m, 2]
        n_total = n_pos_weights.to(maps.dtype) * n_b.sum(1)  # [m]
        maps = maps * (n_b / (n_total[:, None] + GRAD_EPS))[..., None, None]
    elif kind != "cam":
        raise ValueError(f"attribution must be 'gradcam' or 'cam', got {kind!r}")
    return merge_views(maps)


def class_scores(s: torch.Tensor) -> torch.Tensor:
    """Logits of the objective: ``y = spatial mean of ReLU(S)``, ``[..., C, h, w]`` → ``[..., C]``."""
    return F.relu(s).mean(dim=(-2, -1))


def objective_coefficients(
    keys: torch.Tensor, present: torch.Tensor, num_classes: int, suppress_others: Suppress = True
) -> torch.Tensor:
    """``[m, C]`` coefficients ``κ`` with ``Σ_k κ[c, k]·y_k = y_c − Σ_{k∈O(c)} y_k`` (Eq. 5).

    ``suppress_others``: ``True``/``"all"`` — ``O(c)`` = every other class of the classifier
    (official); ``"present"`` — the other classes present in the image; ``False`` — none
    (the plain score ``y_c`` of Eq. 3).
    """
    m = keys.shape[0]
    coef = torch.zeros((m, num_classes), device=keys.device)
    if suppress_others is True or suppress_others == "all":
        coef -= 1.0
    elif suppress_others == "present":
        coef[:, present] = -1.0
    elif suppress_others is not False:
        raise ValueError(f"suppress_others must be True, False, 'all' or 'present', got {suppress_others!r}")
    coef[torch.arange(m, device=keys.device), keys] = 1.0
    return coef


def restoring_mask(a: torch.Tensor, tau: float) -> torch.Tensor:
    """``M = 1[A / max(A) > τ]`` per class, ``[m, h, w]``, recomputed every step, no gradient.

    An all-zero map gives 0/0 = NaN, which compares false: an empty mask, as in the official code.
    """
    a = a.detach()
    return (a / a.amax(dim=(-2, -1), keepdim=True) > tau).to(a.dtype)


def restoring_loss(a: torch.Tensor, a0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``L_AD = Σ_ij M ⊙ |A_t − A_0|`` per class (Eq. 6; raw, unnormalised maps), ``[m, h, w]`` → ``[m]``."""
    return (mask * (a - a0).abs()).sum(dim=(-2, -1))


def climb_step(
    x: torch.Tensor,
    grad: torch.Tensor,
    step_size: float,
    step_norm: StepNorm = "linf",
    bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """One ascent step ``x ← clamp(x + ξ·g / (max|g| + 1e-12), lo, hi)`` (Eq. 3), per class.

    Args:
        x, grad: ``[m, 2, 3, H, W]`` the current iterate of each class's two views and ``∂L/∂x``.
        step_norm: ``"linf"`` (official: ``g`` divided by ``max|g|`` over the class's two views
            jointly, so ``ξ`` is the largest pixel change) or ``"none"`` (the paper: raw ``g``).
        bounds: ``(lo [m], hi [m])`` clamp range per class, or ``None`` for no clamp.
    """
    if step_norm == "linf":
        g_max = grad.abs().flatten(1).amax(1).view(-1, *[1] * (grad.dim() - 1))
        grad = grad / (g_max + GRAD_EPS)
    elif step_norm != "none":
        raise ValueError(f"step_norm must be 'linf' or 'none', got {step_norm!r}")
    x = x + step_size * grad
    if bounds is None:
        return x
    shape = (-1, *[1] * (x.dim() - 1))
    return torch.clamp(x, bounds[0].view(shape), bounds[1].view(shape))


def value_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[m, ...]`` → ``(min [m], max [m])`` over everything but the class axis."""
    flat = x.detach().flatten(1)
    return flat.amin(1), flat.amax(1)


def clamp_bounds(
    clamp: Clamp, x: torch.Tensor, x0_bounds: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The clamp range of the next step, per class.

    ``"current"`` (official): min and max of the current iterate (both views), so the range can
    only shrink from step to step; ``"initial"``: those of ``x⁰``; ``"none"``: no clamp.
    """
    if clamp == "current":
        return value_range(x)
    if clamp == "initial":
        return x0_bounds
    if clamp == "none":
        return None
    raise ValueError(f"clamp must be 'current', 'initial' or 'none', got {clamp!r}")
