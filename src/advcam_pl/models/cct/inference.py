"""CCT's test-time inference (official ``trainer.py`` validation and ``inference.py``).

``net`` is CCT's eval forward (the main decoder's raw output, ``[B, K, 8⌈h/8⌉, 8⌈w/8⌉]`` for an
``h × w`` input), not resized to the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Net = Callable[[torch.Tensor], torch.Tensor]


def pad_to_multiple(image: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    """Reflect-pad ``[B, C, H, W]`` at the bottom/right to ``[B, C, m⌈H/m⌉, m⌈W/m⌉]``."""
    height, width = image.shape[-2:]
    pad_h, pad_w = math.ceil(height / multiple) * multiple - height, math.ceil(width / multiple) * multiple - width
    if pad_h == 0 and pad_w == 0:
        return image
    return F.pad(image, (0, pad_w, 0, pad_h), mode="reflect")


def single_scale_predict(net: Net, image: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    """Validation during training: pad to a multiple of 8, forward, crop. ``[B, 3, H, W]`` →
    ``[B, K, H, W]`` raw outputs."""
    height, width = image.shape[-2:]
    return net(pad_to_multiple(image, multiple))[..., :height, :width]


def multi_scale_predict(
    net: Net,
    image: torch.Tensor,
    scales: Sequence[float] = (0.5, 0.75, 1.0, 1.25, 1.5),
    flip: bool = True,
    multiple: int = 8,
    average: str = "raw",
) -> torch.Tensor:
    """Official multi-scale + flip inference: ``[B, 3, H, W]`` → ``[B, K, H, W]``.

    The image is reflect-padded to a multiple of 8, resized bilinearly by each scale
    (``scale_factor``, ``align_corners=False``); each output (and its flipped twin, mirrored back) is
    upsampled to the padded size (bilinear, ``align_corners=True``); flip pairs are averaged, then
    scales; the result is cropped to ``H × W``. ⚠ Official: the average is of the raw (ReLU'd)
    outputs (``average="raw"``); ``average="softmax"`` averages probabilities instead.
    """
    if average not in ("raw", "softmax"):
        raise ValueError(f"average must be 'raw' or 'softmax', got {average!r}")
    if not scales:
        raise ValueError("scales must not be empty")
    height, width = image.shape[-2:]
    padded = pad_to_multiple(image, multiple)
    size = padded.shape[-2:]

    def predict(x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(net(x), size=size, mode="bilinear", align_corners=True)
        return out.softmax(1) if average == "softmax" else out

    total = None
    for scale in scales:
        x = padded if scale == 1.0 else F.interpolate(padded, scale_factor=scale, mode="bilinear", align_corners=False)
        out = predict(x)
        if flip:
            out = 0.5 * (out + predict(x.flip(-1)).flip(-1))
        total = out if total is None else total + out
    return (total / len(scales))[..., :height, :width]
