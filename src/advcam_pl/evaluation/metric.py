"""The confusion-matrix mIoU of :mod:`advcam_pl.evaluation.miou` as a torchmetrics ``Metric``, for
validation inside Lightning (summed over DDP ranks). Apart from that module, so that scoring with numpy
(the CRF worker processes) does not import torch."""

from __future__ import annotations

import torch
import torchmetrics

from advcam_pl.evaluation.miou import IGNORE_INDEX, NUM_CLASSES, confusion_matrix, miou_from_confusion


class MeanIoU(torchmetrics.Metric):
    """mIoU of the confusion matrix accumulated over a whole split (not a mean of per-image mIoUs),
    as the official CCT and DeepLab validation compute it. ``update(pred, target)`` takes integer
    label maps ``[B, H, W]`` (255 in ``target`` ignored); log the metric object itself
    (``self.log("val/miou", self.val_miou)``) and Lightning computes, syncs and resets it per epoch.
    """

    full_state_update = False

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_state("confusion", default=torch.zeros(num_classes, num_classes, dtype=torch.long),
                       dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        counts = confusion_matrix(pred.cpu().numpy(), target.cpu().numpy(), self.num_classes, self.ignore_index)
        self.confusion += torch.from_numpy(counts).to(self.confusion.device)

    def compute(self) -> torch.Tensor:
        return torch.tensor(miou_from_confusion(self.confusion.cpu().numpy()))
