"""Multi-scale aggregation shared by plain CAM and AdvCAM (IRN's ``make_cam``).

Every scale contributes one stride-16 map per class (the two flipped views already merged).
They are resized to two output grids and summed over scales:

- ``cam``: bilinear (``align_corners=False``) to ``(⌈H/4⌉, ⌈W/4⌉)``;
- ``high_res``: bilinear to ``(⌈H/16⌉·16, ⌈W/16⌉·16)``, cropped to ``H × W``;

then each class map is divided by its maximum + 1e-5, so its peak is just below 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

NORM_EPS = 1e-5


def strided_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """``(⌈H/stride⌉, ⌈W/stride⌉)`` (IRN's ``get_strided_size``)."""
    return math.ceil(size[0] / stride), math.ceil(size[1] / stride)


def strided_up_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """``(⌈H/stride⌉·stride, ⌈W/stride⌉·stride)`` (IRN's ``get_strided_up_size``)."""
    h, w = strided_size(size, stride)
    return h * stride, w * stride


def merge_views(maps: torch.Tensor) -> torch.Tensor:
    """``[..., 2, h, w]`` (an image and its mirror) → ``[..., h, w]``: ``map_0 + flip(map_1)``."""
    return maps[..., 0, :, :] + maps[..., 1, :, :].flip(-1)


def max_normalise(maps: torch.Tensor) -> torch.Tensor:
    """``[n, h, w]`` → each map divided by its own maximum + 1e-5."""
    if maps.shape[0] == 0:
        return maps
    return maps / (maps.amax(dim=(-2, -1), keepdim=True) + NORM_EPS)


def _resize(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[n, h, w]`` → ``[n, *size]``, bilinear, ``align_corners=False``."""
    return F.interpolate(maps[None], size, mode="bilinear", align_corners=False)[0]


def aggregate_scales(
    maps: Sequence[torch.Tensor], size: tuple[int, int], normalise: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum per-scale class maps into ``(cam, high_res)``.

    Args:
        maps: one ``[n, h_s, w_s]`` float tensor per scale (the stride-16 maps of that scale).
        size: the original image size ``(H, W)``.
        normalise: divide each class map by its max + 1e-5 (as IRN and AdvCAM do).

    Returns:
        ``cam [n, ⌈H/4⌉, ⌈W/4⌉]`` and ``high_res [n, H, W]`` (float32).
    """
    if not maps:
        raise ValueError("aggregate_scales needs at least one scale")
    height, width = int(size[0]), int(size[1])
    n = maps[0].shape[0]
    device = maps[0].device
    cam_size = strided_size((height, width), 4)
    up_size = strided_up_size((height, width), 16)
    cam = torch.zeros((n, *cam_size), dtype=torch.float32, device=device)
    high_res = torch.zeros((n, height, width), dtype=torch.float32, device=device)
    if n == 0:
        return cam, high_res
    for m in maps:
        m = m.float()
        cam += _resize(m, cam_size)
        high_res += _resize(m, up_size)[:, :height, :width]
    if normalise:
        cam, high_res = max_normalise(cam), max_normalise(high_res)
    return cam, high_res
