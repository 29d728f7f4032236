"""Atomic file writes and the VOC palette.

Every stage output goes through these helpers: the data is written to a temporary name in the
same folder and renamed into place, so a killed run never leaves a half-written file, and
"the output file exists" is a safe test for "this item is finished" on resume.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` for a temporary file beside ``path``, then rename it to ``path``;
    on any failure the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write ``arrays`` to ``path`` (an ``.npz``; no pickling) atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def atomic_save_json(path: str | os.PathLike, obj: Any) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")

    return atomic_write(path, write)


def voc_palette() -> list[int]:
    """The 256-entry PASCAL VOC colour map as a flat ``[r, g, b, ...]`` list (bit-interleaved)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.extend((r, g, b))
    return palette


def palette_image(mask: np.ndarray) -> Image.Image:
    """``mask`` [H, W] uint8 class indices → a mode-"P" PIL image with the VOC palette."""
    if mask.ndim != 2:
        raise ValueError(f"expected a [H, W] label map, got shape {mask.shape}")
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(voc_palette())
    return image


def atomic_save_palette_png(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a [H, W] uint8 label map as a VOC palette PNG, atomically."""
    image = palette_image(mask)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by :func:`atomic_save_npz` into a plain dict (no pickle)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
