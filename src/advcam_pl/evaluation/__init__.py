"""Confusion-matrix mIoU, per-class tables, the seed background-threshold sweep; ``MeanIoU`` (torchmetrics)
is imported on first use, so that numpy scoring (the CRF worker processes) does not import torch."""

from advcam_pl.evaluation.miou import (
    ConfusionMatrix,
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


def __getattr__(name: str):
    if name == "MeanIoU":
        from advcam_pl.evaluation.metric import MeanIoU

        return MeanIoU
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
