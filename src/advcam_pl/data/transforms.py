"""Image transforms of the official code (IRN / AdvCAM): PIL resizing, ImageNet normalisation, crops.

Images are numpy ``uint8 [H, W, 3]`` until :func:`normalize` turns them into ``float32 [3, H, W]``
tensors. Random transforms take an optional ``rng`` (``np.random.Generator``); without one they draw
from numpy's global state, which PyTorch seeds differently in every DataLoader worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def randint(rng: np.random.Generator | None, low: int, high: int) -> int:
    """A uniform integer in [low, high] (both ends included)."""
    if rng is None:
        return int(np.random.randint(low, high + 1))
    return int(rng.integers(low, high + 1))


def normalize(img: np.ndarray) -> torch.Tensor:
    """``img`` uint8 [H, W, 3] RGB → float32 tensor [3, H, W], ``(img / 255 - mean) / std``."""
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    normalized = (img.astype(np.float32) / 255.0 - mean) / std
    return torch.from_numpy(np.ascontiguousarray(normalized.transpose(2, 0, 1)))


def denormalize(image: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`normalize`: float [3, H, W] → uint8 [H, W, 3] (clipped; for pictures)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device)[:, None, None]
    rgb = ((image * std + mean) * 255.0).round().clamp(0, 255)
    return rgb.to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(round(H·s), round(W·s)), at least 1 pixel each (numpy rounding, as the official code)."""
    return max(1, int(np.round(height * scale))), max(1, int(np.round(width * scale)))


def scale_image(img: np.ndarray, scale: float) -> np.ndarray:
    """``img`` uint8 [H, W, 3] resized with PIL bicubic to [round(H·s), round(W·s), 3]."""
    height, width = img.shape[:2]
    size = scaled_size(height, width, scale)
    if size == (height, width):
        return img
    return np.asarray(Image.fromarray(img).resize(size[::-1], resample=Image.BICUBIC))


def scale_mask(mask: np.ndarray, scale: float) -> np.ndarray:
    """``mask`` uint8 [H, W] label map resized with nearest neighbour to [round(H·s), round(W·s)]."""
    height, width = mask.shape[:2]
    size = scaled_size(height, width, scale)
    if size == (height, width):
        return mask
    return np.asarray(Image.fromarray(mask).resize(size[::-1], resample=Image.NEAREST))


def resize_long(img: np.ndarray, long_side: int) -> np.ndarray:
    """``img`` uint8 [H, W, 3] rescaled (bicubic) so that max(H, W) becomes ``long_side``."""
    return scale_image(img, long_side / max(img.shape[:2]))


def random_resize_long(
    img: np.ndarray, min_long: int, max_long: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """IRN's ``random_resize_long``: long side drawn uniformly from [min_long, max_long]."""
    return resize_long(img, randint(rng, min_long, max_long))


def random_hflip(img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Mirror left-right with probability 1/2."""
    if randint(rng, 0, 1):
        return np.ascontiguousarray(img[:, ::-1])
    return img


def random_crop(
    arrays: Sequence[np.ndarray],
    crop_size: int,
    fill_values: Sequence[float],
    rng: np.random.Generator | None = None,
) -> list[np.ndarray]:
    """IRN's ``random_crop``: the same ``crop_size``² window of every array ([H, W] or [H, W, C]).

    A side longer than the crop is cropped at a random offset; a shorter side is placed at a random
    offset in a canvas filled with ``fill_values`` (0 for a normalised image = the mean colour,
    255 for a mask).
    """
    height, width = arrays[0].shape[:2]
    crop_h, crop_w = min(crop_size, height), min(crop_size, width)
    if width > crop_size:
        canvas_left, img_left = 0, randint(rng, 0, width - crop_size)
    else:
        canvas_left, img_left = randint(rng, 0, crop_size - width), 0
    if height > crop_size:
        canvas_top, img_top = 0, randint(rng, 0, height - crop_size)
    else:
        canvas_top, img_top = randint(rng, 0, crop_size - height), 0
    crops = []
    for array, fill in zip(arrays, fill_values):
        canvas = np.full((crop_size, crop_size, *array.shape[2:]), fill, dtype=array.dtype)
        canvas[canvas_top : canvas_top + crop_h, canvas_left : canvas_left + crop_w] = array[
            img_top : img_top + crop_h, img_left : img_left + crop_w
        ]
        crops.append(canvas)
    return crops


class ClassificationTrainTransform:
    """The CAM classifier's training view (IRN ``train_cam``; DESIGN §3).

    uint8 [H, W, 3] → random long side in ``resize_long`` → random flip → normalise →
    random ``crop_size`` crop, zero-padded after normalisation → float32 [3, crop, crop].
    """

    def __init__(self, crop_size: int = 512, resize_long: tuple[int, int] = (320, 640), hflip: bool = True):
        self.crop_size = int(crop_size)
        self.resize_long = (int(resize_long[0]), int(resize_long[1]))
        self.hflip = hflip

    def __call__(self, img: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        img = random_resize_long(img, *self.resize_long, rng=rng)
        if self.hflip:
            img = random_hflip(img, rng=rng)
        normalized = normalize(img).permute(1, 2, 0).numpy()
        (crop,) = random_crop([normalized], self.crop_size, [0.0], rng=rng)
        return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))

    def __repr__(self) -> str:
        return f"ClassificationTrainTransform(crop_size={self.crop_size}, resize_long={self.resize_long}, hflip={self.hflip})"


class ClassificationEvalTransform:
    """A fixed view for validation batches: long side → ``crop_size``, normalise, zero-pad
    bottom/right to [3, crop_size, crop_size] (so batches stack; the whole image is seen)."""

    def __init__(self, crop_size: int = 512):
        self.crop_size = int(crop_size)

    def __call__(self, img: np.ndarray) -> torch.Tensor:
        normalized = normalize(resize_long(img, self.crop_size))
        canvas = torch.zeros(3, self.crop_size, self.crop_size, dtype=normalized.dtype)
        canvas[:, : normalized.shape[1], : normalized.shape[2]] = normalized
        return canvas

    def __repr__(self) -> str:
        return f"ClassificationEvalTransform(crop_size={self.crop_size})"


def multiscale_images(img: np.ndarray, scales: Sequence[float]) -> list[torch.Tensor]:
    """Inference views: for each scale, [3, round(H·s), round(W·s)] normalised (not flipped)."""
    return [normalize(scale_image(img, scale)) for scale in scales]
