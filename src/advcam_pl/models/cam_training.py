"""What every CAM classifier of stage train_cam shares: the multi-label training of IRN's
``step/train_cam.py`` on top of the ``features`` / ``classifier`` interface that AdvCAM climbs.

A subclass builds its network and provides

- ``features(x)``: images ``[B, 3, H, W]`` → feature map ``[B, K, h, w]``,
- ``classifier``: a 1×1 conv (or :class:`~advcam_pl.advcam.adapters.LinearAsConv1x1`) whose
  ``weight`` is ``[C, K, 1, 1]``,
- :meth:`CAMTrainingModule.parameter_groups`: ``(backbone parameters, classifier parameters)``,

and calls ``self.save_hyperparameters()`` with ``lr``, ``classifier_lr_mult``, ``momentum``,
``weight_decay``, ``poly_power``, ``poly_interval`` and ``pretrained`` among its arguments. This
module adds the loss (multilabel soft margin), validation mAP (torchmetrics), SGD with the
classifier at ``lr * classifier_lr_mult`` and the polynomial decay per step
(:mod:`advcam_pl.training.schedule`), and checkpoints that never fetch initial weights again.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MultilabelAveragePrecision

from advcam_pl.training.schedule import poly_schedule, schedule_length


class CAMTrainingModule(pl.LightningModule):
    """Training, validation and optimisation of a CAM classifier; see the module docstring.

    ``forward(x)`` gives the logits ``[B, C]`` (global average pool, then ``classifier``; as the
    head is linear this is the spatial mean of the class maps plus the head's bias) and ``cam(x)``
    the raw class maps ``[B, C, h, w]``. Training batches are ``{"image": [B, 3, H, W],
    "label": [B, C] multi-hot}``.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.val_ap = MultilabelAveragePrecision(num_labels=num_classes, average=None)

    classifier: nn.Module

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` → ``[B, K, h, w]``."""
        raise NotImplementedError

    def parameter_groups(self) -> tuple[Iterable[nn.Parameter], Iterable[nn.Parameter]]:
        """``(backbone parameters, classifier parameters)`` for the two learning rates."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return self.classifier.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` → logits ``[B, num_classes]``."""
        return self.classifier(self.features(x).mean(dim=(2, 3), keepdim=True)).flatten(1)

    def training_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logits the loss is taken on (a subclass may cut gradients on the way)."""
        return self(x)

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        """Raw class activation maps ``[B, num_classes, h, w]`` (no ReLU, no bias)."""
        return F.conv2d(self.features(x), self.classifier.weight)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.training_logits(batch["image"])
        loss = F.multilabel_soft_margin_loss(logits, batch["label"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(logits))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch["image"])
        labels = batch["label"]
        loss = F.multilabel_soft_margin_loss(logits, labels)
        self.val_ap.update(logits.sigmoid(), labels.long())
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(logits))

    def on_validation_epoch_end(self) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No positive samples found")
            ap = self.val_ap.compute()
        self.val_ap.reset()
        # torchmetrics scores a class without positives as AP 0 (macro averaging would count it);
        # any class with a positive has AP > 0, so the mean runs over the classes present.
        present = torch.isfinite(ap) & (ap > 0)
        mean_ap = ap[present].mean() if present.any() else torch.tensor(float("nan"))
        self.log("val/mAP", mean_ap, prog_bar=True)

    def configure_optimizers(self):
        hp = self.hparams
        backbone, classifier = self.parameter_groups()
        optimizer = torch.optim.SGD(
            [
                {"params": list(backbone), "lr": hp.lr},
                {"params": list(classifier), "lr": hp.lr * hp.classifier_lr_mult},
            ],
            lr=hp.lr,
            momentum=hp.momentum,
            weight_decay=hp.weight_decay,
        )
        schedule = poly_schedule(optimizer, schedule_length(self), hp.poly_power, hp.poly_interval)
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The checkpoint holds the trained network: loading it must not fetch ImageNet weights again.
        hparams = checkpoint.get(self.CHECKPOINT_HYPER_PARAMS_KEY)
        if hparams is not None:
            checkpoint[self.CHECKPOINT_HYPER_PARAMS_KEY] = {**hparams, "pretrained": None}
            checkpoint["initial_weights"] = hparams.get("pretrained")
