"""Seed evaluation: a constant background plane, argmax, mIoU — swept over the threshold."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from advcam_pl.evaluation.miou import NUM_CLASSES, confusion_matrix, miou_from_confusion


def seed_labels(high_res: np.ndarray, keys: np.ndarray, threshold: float) -> np.ndarray:
    """Seed label map ``[H, W]`` from normalised class maps.

    ``high_res`` is ``[n, H, W]`` with values in [0, 1] for the ``n`` present classes whose
    0-based indices are ``keys``; a background plane of value ``threshold`` is prepended and the
    argmax is mapped back to VOC labels (0 background, ``keys + 1`` foreground).
    """
    if high_res.ndim != 3 or len(keys) != high_res.shape[0]:
        raise ValueError(f"high_res {high_res.shape} does not match {len(keys)} keys")
    planes = np.concatenate([np.full((1, *high_res.shape[1:]), threshold, dtype=high_res.dtype), high_res])
    labels = np.concatenate([[0], np.asarray(keys, dtype=np.int64) + 1])
    return labels[planes.argmax(0)].astype(np.uint8)


def sweep_thresholds(
    items: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    thresholds: Sequence[float],
    num_classes: int = NUM_CLASSES,
) -> dict:
    """Seed mIoU for every background threshold in one pass over the data.

    ``items`` yields ``(high_res [n, H, W], keys [n], gt [H, W])``. Returns
    ``{"thresholds", "miou" (per threshold), "best_threshold", "best_miou", "confusion"}``
    with the confusion matrix ``[C, C]`` of the best threshold.
    """
    thresholds = [float(t) for t in thresholds]
    if not thresholds:
        raise ValueError("thresholds must not be empty")
    confs = np.zeros((len(thresholds), num_classes, num_classes), dtype=np.int64)
    n_images = 0
    for high_res, keys, gt in items:
        n_images += 1
        for i, t in enumerate(thresholds):
            confs[i] += confusion_matrix(seed_labels(high_res, keys, t), gt, num_classes)
    if n_images == 0:
        raise ValueError("no images to evaluate")
    mious = [miou_from_confusion(c) for c in confs]
    best = int(np.argmax(mious))
    return {
        "thresholds": thresholds,
        "miou": mious,
        "best_threshold": thresholds[best],
        "best_miou": mious[best],
        "confusion": confs[best],
        "num_images": n_images,
    }
