"""Pictures as arrays: label maps in the VOC palette and class maps as heatmaps over the image, with
captions, side by side or in a grid (the climb strip of the paper's Fig. 1d / Fig. 7).

Every function takes and returns ``uint8 [H, W, 3]`` RGB arrays (maps: float ``[H, W]`` in [0, 1],
label maps: uint8 ``[H, W]`` with 0 background, 1–20 classes, 255 ignore). Only numpy and Pillow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from advcam_pl.io import voc_palette

CAPTION_HEIGHT = 12  # px of the caption bar above a panel (Pillow's default bitmap font is 11 px high)
GAP = 2  # px between panels
PALETTE = np.array(voc_palette(), dtype=np.uint8).reshape(256, 3)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    return image.astype(np.uint8)


def _check_plane(plane: np.ndarray, image: np.ndarray, what: str) -> np.ndarray:
    plane = np.asarray(plane)
    if plane.shape != image.shape[:2]:
        raise ValueError(f"{what} of shape {plane.shape} does not match the image {image.shape[:2]}")
    return plane


def colorize(mask: np.ndarray) -> np.ndarray:
    """``[H, W]`` class indices → ``[H, W, 3]`` uint8 VOC palette colours (0 black, 255 cream)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a [H, W] label map, got shape {mask.shape}")
    return PALETTE[mask.astype(np.uint8)]


def jet(values: np.ndarray) -> np.ndarray:
    """``[H, W]`` values in [0, 1] (clipped) → ``[H, W, 3]`` uint8, the jet colour map (blue → red)."""
    x = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    centres = np.array([3.0, 2.0, 1.0], dtype=np.float32)  # r, g, b peak at 3/4, 1/2, 1/4
    return (255 * np.clip(1.5 - np.abs(4 * x - centres), 0.0, 1.0)).round().astype(np.uint8)


def overlay_mask(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image with ``mask``'s palette colours blended in (weight ``alpha``); background pixels (0)
    keep the image."""
    image = _check_image(image)
    mask = _check_plane(mask, image, "label map")
    blended = (1 - alpha) * image + alpha * colorize(mask).astype(np.float32)
    return np.where((mask != 0)[..., None], blended.round(), image).astype(np.uint8)


def overlay_map(image: np.ndarray, values: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image with a ``[H, W]`` map in [0, 1] blended in as a jet heatmap (weight ``alpha``)."""
    image = _check_image(image)
    values = _check_plane(values, image, "map")
    return ((1 - alpha) * image + alpha * jet(values).astype(np.float32)).round().astype(np.uint8)


def strongest(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[n, H, W]`` class maps → their pixel-wise max ``[H, W]`` (zeros for an image without classes)."""
    maps = np.asarray(maps, dtype=np.float32)
    return maps.max(0) if maps.shape[0] else np.zeros(size, np.float32)


def caption(panel: np.ndarray, text: str) -> np.ndarray:
    """``panel`` under a black bar with ``text`` in white (cut at the panel's width)."""
    panel = _check_image(panel)
    bar = Image.new("RGB", (panel.shape[1], CAPTION_HEIGHT))
    ImageDraw.Draw(bar).text((1, 0), text, fill=(255, 255, 255))
    return np.concatenate([np.asarray(bar), panel], axis=0)


def row(panels: Sequence[np.ndarray], captions: Sequence[str] | None = None) -> np.ndarray:
    """Panels of one height side by side, ``GAP`` px apart, each under its caption when given."""
    if not panels:
        raise ValueError("row() needs at least one panel")
    if captions is not None:
        if len(captions) != len(panels):
            raise ValueError(f"{len(captions)} captions for {len(panels)} panels")
        panels = [caption(p, c) for p, c in zip(panels, captions)]
    height = panels[0].shape[0]
    if any(p.shape[0] != height for p in panels):
        raise ValueError(f"panels of different heights: {[p.shape[0] for p in panels]}")
    gap = np.full((height, GAP, 3), 255, np.uint8)
    out = [panels[0]]
    for panel in panels[1:]:
        out += [gap, panel]
    return np.concatenate(out, axis=1)


def column(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Rows stacked top to bottom, ``GAP`` px apart (narrower rows padded white on the right)."""
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    out = [padded[0]]
    for r in padded[1:]:
        out += [np.full((GAP, width, 3), 255, np.uint8), r]
    return np.concatenate(out, axis=0)


def strip_steps(num_maps: int, count: int) -> list[int]:
    """``count`` climb steps out of ``0 … num_maps-1``, evenly spaced, first and last included."""
    if num_maps < 1:
        raise ValueError(f"a climb has at least one map, got num_maps={num_maps}")
    count = max(1, min(int(count), num_maps))
    return sorted({int(round(s)) for s in np.linspace(0, num_maps - 1, count)})


def climb_strip(image: np.ndarray, high_res: np.ndarray, class_names: Sequence[str], steps: Sequence[int],
                alpha: float = 0.5) -> np.ndarray:
    """The successive maps of the climb: one row per class, one column per step of ``steps``.

    Args:
        image: ``[H, W, 3]`` uint8.
        high_res: ``[J, n, H, W]`` the trajectory's accumulated maps (entry ``t``: ``x⁰ … x^t``).
        class_names: the ``n`` classes' names (row labels).
        steps: which entries ``t`` to show.
    """
    high_res = np.asarray(high_res)
    if high_res.ndim != 4 or high_res.shape[1] != len(class_names):
        raise ValueError(f"expected a trajectory [J, {len(class_names)}, H, W], got shape {high_res.shape}")
    rows = []
    for i, name in enumerate(class_names):
        captions = [f"{name} t={t}" if k == 0 else f"t={t}" for k, t in enumerate(steps)]
        rows.append(row([overlay_map(image, high_res[t, i], alpha) for t in steps], captions))
    return column(rows) if rows else caption(image, "no class")
