"""Confusion-matrix mIoU over the 21 VOC classes (background + 20), label 255 ignored.

:class:`ConfusionMatrix` accumulates in numpy (the stages' scoring); :class:`~advcam_pl.evaluation.metric.MeanIoU`
is the same accumulator as a torchmetrics ``Metric``. This module imports numpy only: the CRF worker
processes score with it, and importing torch there cost each of them seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NUM_CLASSES = 21
IGNORE_INDEX = 255


def confusion_matrix(
    pred: np.ndarray, gt: np.ndarray, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """Count ``[num_classes, num_classes]`` (rows: ground truth, columns: prediction).

    ``pred`` and ``gt`` are integer label maps of the same shape; pixels whose ground truth is
    ``ignore_index`` are not counted. A prediction outside ``[0, num_classes)`` is an error.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    valid = gt != ignore_index
    p = pred[valid].astype(np.int64)
    g = gt[valid].astype(np.int64)
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"prediction labels must lie in [0, {num_classes}), got [{p.min()}, {p.max()}]")
    if g.size and (g.min() < 0 or g.max() >= num_classes):
        raise ValueError(f"ground-truth labels must lie in [0, {num_classes}) or be {ignore_index}")
    return np.bincount(g * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU ``[C]``; NaN for a class absent from both prediction and ground truth."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def miou_from_confusion(conf: np.ndarray) -> float:
    """Mean IoU over the classes that occur (in prediction or ground truth)."""
    return float(np.nanmean(iou_from_confusion(conf)))


class ConfusionMatrix:
    """Accumulates a confusion matrix over many images; ``.miou`` and ``.iou`` read it out."""

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        self.matrix += confusion_matrix(pred, gt, self.num_classes, self.ignore_index)

    @property
    def iou(self) -> np.ndarray:
        return iou_from_confusion(self.matrix)

    @property
    def miou(self) -> float:
        return miou_from_confusion(self.matrix)


def iou_by_class(iou: np.ndarray, class_names: Sequence[str]) -> dict[str, float | None]:
    """Per-class IoU ``[C]`` → ``{class name: IoU}`` for a metrics JSON, None for a class absent from
    both prediction and ground truth. Every stage stores it under the key ``"per_class_iou"``."""
    if len(iou) != len(class_names):
        raise ValueError(f"{len(iou)} IoU values for {len(class_names)} class names")
    return {name: None if np.isnan(value) else float(value) for name, value in zip(class_names, iou)}


def per_class_table(iou: np.ndarray, class_names: Sequence[str], title: str = "IoU (%)") -> str:
    """A two-column text table of per-class IoU (in %) with a final mIoU row."""
    if len(iou) != len(class_names):
        raise ValueError(f"{len(iou)} IoU values for {len(class_names)} class names")
    width = max(len(n) for n in [*class_names, "mIoU"])
    lines = [f"{'class':<{width}}  {title}", "-" * (width + 2 + len(title))]
    for name, value in zip(class_names, iou):
        lines.append(f"{name:<{width}}  {'-' if np.isnan(value) else f'{100 * value:6.2f}'}")
    lines.append("-" * (width + 2 + len(title)))
    lines.append(f"{'mIoU':<{width}}  {100 * np.nanmean(iou):6.2f}")
    return "\n".join(lines)
