"""Ground-truth boundaries on IRN's stride-4 grid: what a perfect IRN would predict.

The random walk with these boundaries instead of IRN's (stage ``eval_walk_ceiling``) is the walk's
ceiling: the pseudo-mask mIoU that the seeds and the walk settings allow when the boundaries are
right, so a low mask mIoU can be told apart from a weak IRN.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

IGNORE_INDEX = 255
STRIDE = 4


def grid_labels(mask: np.ndarray, stride: int = STRIDE) -> np.ndarray:
    """A ``[H, W]`` label map sampled on the stride-``stride`` grid ``[⌈H/s⌉, ⌈W/s⌉]`` at the cell
    centres (pixel ``s·i + s//2``, clipped to the image), as PIL's nearest resize does (IRN's
    affinity labels, :func:`advcam_pl.data.affinity.stride4_labels`, on sides of any length)."""
    height, width = mask.shape
    rows = np.minimum(np.arange(0, height, stride) + stride // 2, height - 1)
    cols = np.minimum(np.arange(0, width, stride) + stride // 2, width - 1)
    return mask[np.ix_(rows, cols)]


def gt_boundary_map(mask: np.ndarray, stride: int = STRIDE) -> np.ndarray:
    """Ideal IRN boundaries ``[⌈H/s⌉, ⌈W/s⌉]`` float32 (1 boundary, 0 inside) from a GT mask ``[H, W]``
    (0 background, classes, 255 ignore).

    On the grid labels (:func:`grid_labels`): every ignore cell (VOC's boundary band); every
    background cell with an object among its 8 neighbours; and, between two objects, the cells of
    the lower class index with a higher one among their 8 neighbours. That is one closed,
    8-connected line of cells, on the background side where it can be, so the walk's own ×4
    upsampling is all that erodes the objects.
    """
    labels = grid_labels(mask, stride).astype(np.int32)
    valid = labels != IGNORE_INDEX
    objects = np.where(valid, labels, 0)
    highest = ndimage.maximum_filter(objects, footprint=np.ones((3, 3), dtype=bool), mode="nearest")
    boundary = ~valid
    boundary |= (labels == 0) & (highest > 0)
    boundary |= valid & (labels > 0) & (highest > labels)
    return boundary.astype(np.float32)
