"""The inputs of one climb: every scale of an image as a pair of views (image, mirror).

The precise path is a list of pre-scaled images, one ``[3, h_s, w_s]`` per scale, as
``InferenceDataModule`` makes them (uint8 image resized with PIL bicubic, then normalised —
the official pipeline). A single normalised ``[3, H, W]`` tensor is also accepted; it is then
resized on the tensor (bicubic, antialiased when shrinking) to the same ``round(H·s) × round(W·s)``
grid. The two differ slightly: PIL resizes the uint8 image and rounds/clips to 0–255 before
normalising, the tensor path interpolates the normalised floats (no rounding, no clipping) and
PyTorch's antialiasing kernel is close to, not identical with, PIL's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from advcam_pl.data.transforms import scaled_size

ImageInput = torch.Tensor | Sequence[torch.Tensor]


def rescale_tensor(image: torch.Tensor, scale: float) -> torch.Tensor:
    """Normalised ``[3, H, W]`` → ``[3, round(H·s), round(W·s)]`` (bicubic; antialiased if s < 1)."""
    height, width = image.shape[-2:]
    size = scaled_size(height, width, scale)
    if size == (height, width):
        return image
    return F.interpolate(
        image[None], size, mode="bicubic", align_corners=False, antialias=scale < 1
    )[0]


def scale_images(image: ImageInput, scales: Sequence[float]) -> list[torch.Tensor]:
    """One ``[3, h_s, w_s]`` image per scale, from a tensor or an already-scaled list."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a normalised [3, H, W] image, got shape {tuple(image.shape)}")
        return [rescale_tensor(image, s) for s in scales]
    images = list(image)
    if len(images) != len(scales):
        raise ValueError(f"{len(images)} scaled images for {len(scales)} scales {tuple(scales)}")
    for img in images:
        if img.dim() != 3 or img.shape[0] != 3:
            raise ValueError(f"expected [3, h, w] images per scale, got shape {tuple(img.shape)}")
    return images


def original_size(image: ImageInput, scales: Sequence[float], size: Sequence[int] | None) -> tuple[int, int]:
    """``(H, W)``: ``size`` if given, else the tensor's size or that of the scale-1.0 entry."""
    if size is not None:
        return int(size[0]), int(size[1])
    if isinstance(image, torch.Tensor):
        return int(image.shape[-2]), int(image.shape[-1])
    for img, s in zip(image, scales):
        if float(s) == 1.0:
            return int(img.shape[-2]), int(img.shape[-1])
    raise ValueError("scales contain no 1.0: pass size=(H, W) explicitly")


def flip_pair(image: torch.Tensor) -> torch.Tensor:
    """``[3, h, w]`` → ``[2, 3, h, w]``: the image and its horizontal mirror."""
    return torch.stack([image, image.flip(-1)])


def scale_steps(steps: int, scale: float, half_steps_at_half_scale: bool = True) -> int:
    """Steps at ``scale``: the official rule runs fewer at scale 0.5.

    Scale 0.5 runs ``T // 2`` steps when ``T > 10``, 5 when ``6 ≤ T ≤ 10`` and ``T`` when ``T < 6``;
    every other scale runs ``T``. (The official code applies the rule to the second entry of
    ``cam_scales``, which is 0.5 in its default ``(1.0, 0.5, 1.5, 2.0)``; here it is the scale
    whose value is 0.5.)
    """
    if not half_steps_at_half_scale or float(scale) != 0.5:
        return steps
    if steps > 10:
        return steps // 2
    if steps >= 6:
        return 5
    return steps
