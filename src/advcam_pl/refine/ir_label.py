"""Inter-pixel relation (IR) labels: confident foreground, confident background, ignore.

IRN ``step/cam_to_ir_label.py`` on the full-resolution ``high_res`` CAMs:

1. ``fg_conf``: argmax with a background plane at ``fg_threshold`` (0.35 official AdvCAM, 0.30 IRN),
   refined by the dense CRF → a class where the CAM is strong, else 0;
2. ``bg_conf``: the same with ``bg_threshold`` (0.15 official AdvCAM, 0.05 IRN) → 0 only where the
   CAM is weak everywhere;
3. label = ``fg_conf``; 255 (ignore) where ``fg_conf`` says background; 0 where both say background.
   (Where ``fg_conf`` is a class the class wins, whatever ``bg_conf`` says.)
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from advcam_pl.refine.crf import CRF_DEFAULTS, crf_inference_label, keyed_argmax

IGNORE_INDEX = 255


def combine_confident(fg_conf: np.ndarray, bg_conf: np.ndarray) -> np.ndarray:
    """IRN's rule: ``fg_conf`` where it is a class, 0 where both maps are background, else 255.

    Both ``[H, W]`` VOC labels (0 background); returns ``[H, W]`` uint8.
    """
    conf = fg_conf.astype(np.uint8)  # astype copies
    conf[fg_conf == 0] = IGNORE_INDEX
    conf[(fg_conf == 0) & (bg_conf == 0)] = 0
    return conf


def confident_labels(img: np.ndarray | None, high_res: np.ndarray, keys: np.ndarray, threshold: float,
                     crf: dict[str, Any] | bool | None = None) -> np.ndarray:
    """Argmax with a background plane at ``threshold`` → CRF → VOC labels ``[H, W]``.

    ``crf=None`` uses :data:`CRF_DEFAULTS`; ``crf=False`` skips the CRF (``img`` may then be None).
    """
    keys_bg = np.concatenate([[0], np.asarray(keys, dtype=np.int64).reshape(-1) + 1])
    index = keyed_argmax(high_res, threshold)
    if crf is not False:
        overrides = dict(crf) if crf not in (None, True) else {}
        index = crf_inference_label(img, index, n_labels=len(keys_bg), **{**CRF_DEFAULTS, **overrides})
    return keys_bg[index]


def ir_label(img: np.ndarray | None, high_res: np.ndarray, keys: np.ndarray, fg_threshold: float = 0.35,
             bg_threshold: float = 0.15, crf: dict[str, Any] | bool | None = None) -> np.ndarray:
    """IR label ``[H, W]`` uint8 of one image: classes ``keys + 1``, 0 background, 255 ignore.

    Args:
        img: RGB uint8 ``[H, W, 3]`` (the CRF's pairwise terms).
        high_res: ``[n, H, W]`` max-normalised CAMs of the present classes ``keys`` ``[n]`` (0-based).
        crf: CRF keyword overrides; ``False`` skips the CRF (tests, ablations).
    """
    if high_res.ndim != 3 or high_res.shape[0] != len(keys):
        raise ValueError(f"high_res {high_res.shape} does not match {len(keys)} keys")
    if img is not None and img.shape[:2] != high_res.shape[1:]:
        raise ValueError(f"image {img.shape[:2]} and high_res {high_res.shape[1:]} differ in size")
    fg_conf = confident_labels(img, high_res, keys, fg_threshold, crf)
    bg_conf = confident_labels(img, high_res, keys, bg_threshold, crf)
    return combine_confident(fg_conf, bg_conf)


def write_ir_label(out_path: str | os.PathLike, img: np.ndarray, high_res: np.ndarray, keys: np.ndarray, *,
                   fg_threshold: float = 0.35, bg_threshold: float = 0.15,
                   crf: dict[str, Any] | bool | None = None) -> np.ndarray:
    """:func:`ir_label` of one image, written to ``out_path`` (palette PNG, atomic); a job of the
    make_ir_label stage's CRF workers. Returns the pixel counts ``[foreground, background, ignore]``."""
    from advcam_pl.io import atomic_save_palette_png

    label = ir_label(img, high_res, keys, fg_threshold, bg_threshold, crf)
    atomic_save_palette_png(out_path, label)
    ignore = int((label == IGNORE_INDEX).sum())
    background = int((label == 0).sum())
    return np.array([label.size - ignore - background, background, ignore], dtype=np.int64)
