"""The CAM classifier of IRN and AdvCAM: a stride-16 ResNet, global average pooling, a 1×1 conv.

Because the head is linear and has no bias, pooling and classifying commute: the class score is
the spatial mean of the class activation map ``cam(x) = conv1x1(features(x), W)``. AdvCAM climbs
on exactly these maps, so :meth:`CAMClassifier.cam` and :meth:`CAMClassifier.features` never
detach anything; the IRN training trick of cutting the gradient after ``layer2`` lives only in
:meth:`CAMClassifier.training_step`.

Training follows IRN's ``step/train_cam.py``: multilabel soft margin loss, SGD with the backbone
at ``lr`` and the classifier at ``lr * classifier_lr_mult``, polynomial decay per step
(:class:`~advcam_pl.models.cam_training.CAMTrainingModule`, shared with
:class:`~advcam_pl.models.torchvision_cam.TorchvisionCAMClassifier`).
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from advcam_pl.models.cam_training import CAMTrainingModule
from advcam_pl.models.resnet import ResNet, set_requires_grad
from advcam_pl.models.weights import load_backbone_weights

NORM_LAYERS = {"frozen": FrozenBatchNorm2d, "batch": nn.BatchNorm2d}


class CAMClassifier(CAMTrainingModule):
    """ResNet with strides (2, 2, 2, 1) (output stride 16), frozen BatchNorm (by default) and a
    frozen conv1 as in IRN, plus a bias-free 1×1 conv ``classifier``.

    ``features(x)`` ``[B, K, h, w]``, ``forward(x)`` logits ``[B, num_classes]`` and ``cam(x)``
    ``[B, num_classes, h, w]``, with ``h, w = ⌈H/16⌉, ⌈W/16⌉``. Training batches are
    ``{"image": [B, 3, H, W], "label": [B, num_classes] multi-hot}``.

    Args:
        depth: ResNet depth; 50 as the paper, 18/34 for demos and tests.
        pretrained: ``"imagenet"`` (torchvision's weights), a path to a ``.pth`` state dict or a
            Lightning checkpoint, or ``None`` (random init); a file must fill every backbone tensor
            (:func:`~advcam_pl.models.weights.load_backbone_weights`). ``self.num_loaded_tensors``
            says how many were copied. A checkpoint saved from this module records
            ``pretrained=None``, so ``load_from_checkpoint(path)`` never fetches weights again.
        allow_partial_init: accept a file that fills only some backbone tensors (a warning gives
            the count); off: such a file is an error.
        num_classes: 20 for PASCAL VOC (no background).
        norm: ``"frozen"`` (FrozenBatchNorm2d: the pretrained statistics and affine stay fixed,
            whatever the train/eval mode) or ``"batch"`` (trainable ``nn.BatchNorm2d``, for training
            from scratch, where a frozen BN of a random init would be no normalisation at all;
            compute CAMs with the model in ``eval()`` mode then).
        detach_stage2: IRN's ``x = self.stage2(x).detach()`` during training, IRN's stage2 being
            ``layer2``: conv1, layer1 and layer2 receive no gradient.
        lr: backbone learning rate; the classifier uses ``lr * classifier_lr_mult``.
        momentum, weight_decay: SGD's. The official values are momentum 1e-4 (IRN's
            PolyOptimizer passes its weight decay positionally into SGD's momentum slot) and weight
            decay 1e-4 (set explicitly in each parameter group).
        poly_power, poly_interval: ``lr_t = lr * (1 - t / T) ** poly_power`` over the ``T`` optimiser
            steps of the fit, decayed every ``poly_interval`` steps (IRN's PolyOptimizer: every step).
    """

    def __init__(
        self,
        depth: int = 50,
        pretrained: str | os.PathLike | None = "imagenet",
        num_classes: int = 20,
        norm: str = "frozen",
        detach_stage2: bool = True,
        lr: float = 0.1,
        classifier_lr_mult: float = 10.0,
        momentum: float = 1e-4,
        weight_decay: float = 1e-4,
        poly_power: float = 0.9,
        poly_interval: int = 1,
        allow_partial_init: bool = False,
    ):
        super().__init__(num_classes)
        pretrained = None if pretrained is None else os.fspath(pretrained)
        if norm not in NORM_LAYERS:
            raise ValueError(f"norm must be one of {sorted(NORM_LAYERS)}, got {norm!r}")
        self.save_hyperparameters()
        self.backbone = ResNet(depth, strides=(2, 2, 2, 1), norm_layer=NORM_LAYERS[norm])
        self.classifier = nn.Conv2d(self.backbone.out_channels[-1], num_classes, 1, bias=False)
        set_requires_grad(self.backbone.conv1, False)
        set_requires_grad(self.backbone.bn1, False)

        self.num_loaded_tensors = load_backbone_weights(self.backbone, pretrained, depth, "CAMClassifier",
                                                        allow_partial=allow_partial_init).loaded

    def features(self, x: torch.Tensor, detach_stage2: bool = False) -> torch.Tensor:
        """``[B, 3, H, W]`` → layer4 output ``[B, K, ⌈H/16⌉, ⌈W/16⌉]`` (K = 2048 for ResNet-50,
        512 for ResNet-18/34)."""
        x = self.backbone.stem(x)
        x = self.backbone.layer1(x)
        x = self.backbone.layer2(x)
        if detach_stage2:
            x = x.detach()
        x = self.backbone.layer3(x)
        return self.backbone.layer4(x)

    def forward(self, x: torch.Tensor, detach_stage2: bool = False) -> torch.Tensor:
        """``[B, 3, H, W]`` → logits ``[B, num_classes]`` (global average pool, then the 1×1 conv)."""
        pooled = self.features(x, detach_stage2).mean(dim=(2, 3), keepdim=True)
        return self.classifier(pooled).flatten(1)

    def training_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self(x, detach_stage2=self.hparams.detach_stage2)

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        # Parameters cut off by detach_stage2 stay in the group, as in IRN: they get no gradient,
        # so SGD skips them (weight decay included).
        return [p for p in self.backbone.parameters() if p.requires_grad], list(self.classifier.parameters())
