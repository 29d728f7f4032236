"""Plain CAM of any classifier with ``features(x)`` and a 1×1 ``classifier`` conv (IRN's make_cam)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from advcam_pl.advcam.aggregate import aggregate_scales, merge_views
from advcam_pl.advcam.modes import eval_mode
from advcam_pl.advcam.result import AdvCAMResult
from advcam_pl.advcam.views import ImageInput, flip_pair, original_size, scale_images

DEFAULT_SCALES = (1.0, 0.5, 1.5, 2.0)


def classifier_weight(model: nn.Module) -> torch.Tensor:
    """The ``[C, K, 1, 1]`` weight of ``model.classifier`` (a 1×1 conv)."""
    weight = getattr(getattr(model, "classifier", None), "weight", None)
    if weight is None or weight.dim() != 4 or weight.shape[-2:] != (1, 1):
        raise TypeError("the model needs a 1×1 conv `classifier` with a weight of shape [C, K, 1, 1]")
    return weight


def class_maps_from_features(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``S = conv1x1(F, W)``: ``[B, K, h, w]`` → ``[B, C, h, w]``, no ReLU.

    The classifier's bias, if it has one, is left out, as in the official ``CAM.forward``
    (a constant per class shifts every location alike).
    """
    return F.conv2d(features, weight.to(features.dtype))


def class_maps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Raw class maps ``S [B, C, h, w]`` of images ``x [B, 3, H, W]`` (stride of ``features``)."""
    return class_maps_from_features(model.features(x), classifier_weight(model))


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def as_class_indices(classes: torch.Tensor | Sequence[int], device: torch.device) -> torch.Tensor:
    """0-based present class indices as an int64 ``[n]`` tensor."""
    keys = torch.as_tensor(classes, device=device)
    if keys.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    if keys.dtype.is_floating_point or keys.dtype == torch.bool:
        raise TypeError("classes must be integer class indices; use label.nonzero()[:, 0] for a multi-hot label")
    return keys.reshape(-1).to(torch.int64)


@torch.no_grad()
def compute_cam(
    model: nn.Module,
    image: ImageInput,
    classes: torch.Tensor | Sequence[int],
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    size: Sequence[int] | None = None,
) -> AdvCAMResult:
    """Multi-scale, flip-averaged CAM of the ``classes`` of one image (IRN's ``make_cam``).

    Per scale, the image and its mirror go through the model together and the class map is
    ``ReLU(S[0, c]) + flip(ReLU(S[1, c]))``; scales are aggregated by
    :func:`~advcam_pl.advcam.aggregate.aggregate_scales`.

    Args:
        model: exposes ``features(x) -> [B, K, h, w]`` and a 1×1 conv ``classifier``.
        image: a normalised ``[3, H, W]`` tensor, or one ``[3, h_s, w_s]`` per scale.
        classes: 0-based indices of the present classes ``[n]``.
        scales: the scales of ``image`` (or to resize it to).
        size: the original ``(H, W)``; by default that of the scale-1.0 image.

    Returns:
        :class:`AdvCAMResult` with ``keys [n]``, ``cam [n, ⌈H/4⌉, ⌈W/4⌉]``, ``high_res [n, H, W]``.
    """
    device = model_device(model)
    hw = original_size(image, scales, size)
    keys = as_class_indices(classes, device)
    maps = []
    with eval_mode(model):
        for img in scale_images(image, scales):
            s = class_maps(model, flip_pair(img.to(device)))  # [2, C, h, w]
            maps.append(merge_views(F.relu(s[:, keys].float()).transpose(0, 1)))  # [n, h, w]
    cam, high_res = aggregate_scales(maps, hw)
    return AdvCAMResult(keys=keys, cam=cam, high_res=high_res)
