"""Confusion-matrix mIoU, per-class tables, the seed background-threshold sweep."""

from advcam_pl.evaluation.miou import (
    ConfusionMatrix,
    MeanIoU,
    confusion_matrix,
    iou_by_class,
    iou_from_confusion,
    miou_from_confusion,
    per_class_table,
)
from advcam_pl.evaluation.sweep import seed_labels, sweep_thresholds

__all__ = [
    "ConfusionMatrix",
    "MeanIoU",
    "confusion_matrix",
    "iou_by_class",
    "iou_from_confusion",
    "miou_from_confusion",
    "per_class_table",
    "seed_labels",
    "sweep_thresholds",
]
