"""DeepLab-v2 (Chen et al., TPAMI 2017) as AdvCAM trains it on its pseudo masks.

ResNet-101 in the Caffe layout (stride on the first 1×1 conv of a block, ceil-mode max-pool),
layer3/layer4 dilated 2/4 → output stride 8 (``output_stride=16``: layer4 unstrided, no dilation, the
CAM classifier's layout; a departure for CPU configs, not DeepLab-v2's); ASPP = four 3×3 convs with
dilation 6/12/18/24 whose outputs are *summed*. Training uses DeepLab-v2's multi-scale inputs
(MSC): the image at 1.0, 0.75 and 0.5, plus the pixel-wise max of the three (the smaller logits
upsampled bilinearly to the 1.0 logits' size); the loss is summed over those four outputs, each at
its own resolution, with the labels resized by nearest neighbour. The solver follows DeepLab-v2's
``train.prototxt`` as re-implemented by kazuto1011/deeplab-pytorch (the code AdvCAM's README points
to): SGD lr 2.5e-4,
momentum 0.9, weight decay 5e-4, ASPP weights ×10 and ASPP biases ×20 (no decay), poly 0.9 decayed
every 10 iterations (its ``PolynomialLR`` with ``LR_DECAY: 10``; :mod:`advcam_pl.training.schedule`).

Initial weights (:func:`advcam_pl.models.weights.load_backbone_weights`): torchvision's ImageNet
ResNet, a file with torchvision names, or the Caffe-converted ImageNet ResNet-101 that AdvCAM's README
links. The latter expects BGR, 0–255, mean-subtracted input; the model then converts its normalised
RGB input inside :meth:`DeepLabV2.forward` (``input_space``), so data and datamodules stay the same.

Test time (:func:`multi_scale_logits`): logits at several scales (+ flip), upsampled to the image
size and fused by a pixel-wise max of the *logits*, as DeepLab's MSC test does; CRF comes after,
in the ``eval_seg`` stage.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from advcam_pl.evaluation.metric import MeanIoU
from advcam_pl.models.resnet import ResNet, output_stride_layout
from advcam_pl.models.weights import INPUT_SPACES, load_backbone_weights, to_input_space
from advcam_pl.training.schedule import poly_schedule, schedule_length

log = logging.getLogger(__name__)

IGNORE_INDEX = 255


class ASPP(nn.Module):
    """DeepLab-v2 ASPP: parallel 3×3 convs (dilation = padding = rate), outputs summed.

    ``[B, in_channels, h, w]`` → ``[B, num_classes, h, w]``. Weights ~ N(0, 0.01²), biases 0.
    """

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int] = (6, 12, 18, 24)):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates
        )
        for conv in self.convs:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(conv(x) for conv in self.convs)


def resize_labels(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``labels`` ``[B, H, W]`` int → ``[B, h, w]`` int64 by nearest neighbour.

    Samples source pixel ``floor((i + 0.5) · H / h)`` in float64, exactly as PIL's NEAREST that
    kazuto1011/deeplab-pytorch uses (``F.interpolate(mode="nearest")`` shifts the labels by half a
    pixel, and ``nearest-exact`` rounds some ties the other way).
    """
    height, width = (int(s) for s in size)
    if tuple(labels.shape[-2:]) == (height, width):
        return labels.long()

    def index(n_in: int, n_out: int) -> torch.Tensor:
        idx = np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64)
        return torch.from_numpy(np.minimum(idx, n_in - 1)).to(labels.device)

    rows, cols = index(labels.shape[-2], height), index(labels.shape[-1], width)
    return labels[:, rows][:, :, cols].long()


def multi_scale_logits(
    net: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    scales: Sequence[float] = (0.5, 0.75, 1.0, 1.25),
    flip: bool = True,
    fuse: str = "max",
) -> torch.Tensor:
    """Test-time multi-scale inference.

    ``image`` ``[B, 3, H, W]`` (normalised) is resized bilinearly to ``int(s·H) × int(s·W)`` for each
    scale (and mirrored when ``flip``); each view's logits from ``net`` are mirrored back and
    upsampled bilinearly to ``[B, C, H, W]``; ``fuse="max"`` takes the pixel-wise max over all
    views (DeepLab-v2's MSC), ``"mean"`` their average. Returns fused logits ``[B, C, H, W]``.
    """
    if fuse not in ("max", "mean"):
        raise ValueError(f"fuse must be 'max' or 'mean', got {fuse!r}")
    height, width = image.shape[-2:]
    fused: torch.Tensor | None = None
    n_views = 0
    for scale in scales:
        if scale == 1.0:
            x = image
        else:
            size = (max(1, int(scale * height)), max(1, int(scale * width)))
            x = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        views = [(x, False), (x.flip(-1), True)] if flip else [(x, False)]
        for view, flipped in views:
            logits = net(view)
            if flipped:
                logits = logits.flip(-1)
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            n_views += 1
            if fused is None:
                fused = logits
            elif fuse == "max":
                fused = torch.maximum(fused, logits)
            else:
                fused = fused + logits
    if fused is None:
        raise ValueError("scales must not be empty")
    return fused if fuse == "max" else fused / n_views


# -- the LightningModule ------------------------------------------------------------------------------


class DeepLabV2(pl.LightningModule):
    """DeepLab-v2 with multi-scale training (MSC) and frozen BatchNorm.

    Args:
        depth: ResNet depth (101 for the paper; 18/50 for the tiny demo/test configs).
        num_classes: 21 for VOC.
        pretrained: ``"imagenet"`` (torchvision's; a stride is no weight, so the Caffe layout takes
            them unchanged, only its features differ slightly from the Caffe model's), a weights file
            (torchvision names, our ``backbone.*``, or kazuto1011's Caffe names), or ``None``.
            Every backbone tensor must load (``self.n_pretrained_loaded`` counts them), unless
            ``allow_partial_init`` (then a warning with the count).
        input_space: what the backbone expects (:data:`~advcam_pl.models.weights.INPUT_SPACES`);
            ``None`` follows the initial weights (``"bgr_caffe"`` for a Caffe-converted file). Inputs
            are always ImageNet-normalised RGB; :meth:`forward` converts them. Saved in the
            checkpoint, so a reloaded model converts the same way.
        rates: ASPP dilation rates (in logit cells, so at output stride 16 the same rates span twice
            the pixels).
        output_stride: 8 (DeepLab-v2: layer3/layer4 dilated 2/4) or 16 (layer4 unstrided, no
            dilation: the CAM classifier's layout, so a backbone started from it sees the geometry
            its weights were trained with, at about half the step time; the CPU demo).
        msc_scales: extra training input scales besides 1.0 (empty: single-scale training).
        freeze_bn: FrozenBatchNorm2d (DeepLab-v2; no BN parameter is trained and train mode changes
            nothing); ``False`` trains ordinary BatchNorm (only sensible from scratch with big batches).
        lr, momentum, weight_decay: SGD's.
        poly_power, poly_interval, max_steps: the poly schedule over ``max_steps`` (else the
            trainer's optimiser steps), decayed every ``poly_interval`` steps (kazuto1011: 10).
        aspp_weight_lr_mult, aspp_bias_lr_mult: ASPP weights ×10, biases ×20 (without weight decay).
        class_balanced: weight the cross-entropy by median frequency / class frequency of the
            training labels (``datamodule.class_frequencies()``); off in DeepLab-v2.

    Shapes: ``forward`` ``[B, 3, H, W]`` → logits ``[B, C, ⌈H/s⌉', ⌈W/s⌉']`` (``s = output_stride``,
    Caffe arithmetic: 321 → 41 at 8). Batches: ``{"image": [B, 3, h, w] float, "label": [B, h, w]
    int64}`` in training and validation (``label`` 255 = ignore); ``{"image": [1, 3, H, W], "id":
    [str]}`` in predict, whose
    output is the softmax of :func:`multi_scale_logits` at image size, ``[1, C, H, W]``.
    """

    def __init__(
        self,
        depth: int = 101,
        num_classes: int = 21,
        pretrained: str | None = "imagenet",
        input_space: str | None = None,
        rates: Sequence[int] = (6, 12, 18, 24),
        output_stride: int = 8,
        msc_scales: Sequence[float] = (0.75, 0.5),
        freeze_bn: bool = True,
        lr: float = 2.5e-4,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        aspp_weight_lr_mult: float = 10.0,
        aspp_bias_lr_mult: float = 20.0,
        poly_power: float = 0.9,
        poly_interval: int = 10,
        max_steps: int | None = None,
        class_balanced: bool = False,
        test_scales: Sequence[float] = (0.5, 0.75, 1.0, 1.25),
        test_flip: bool = True,
        test_fuse: str = "max",
        allow_partial_init: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        strides, dilations = output_stride_layout(output_stride, "model.module.output_stride")
        norm = FrozenBatchNorm2d if freeze_bn else nn.BatchNorm2d
        self.backbone = ResNet(depth, strides=strides, dilations=dilations, stride_in_1x1=True,
                               ceil_mode=True, norm_layer=norm)
        self.aspp = ASPP(self.backbone.out_channels[-1], num_classes, rates)
        weights = load_backbone_weights(self.backbone, pretrained, depth, "DeepLab-v2", INPUT_SPACES,
                                        allow_partial=allow_partial_init)
        self.n_pretrained_loaded = weights.loaded
        self.hparams.input_space = input_space or weights.input_space
        if self.hparams.input_space not in INPUT_SPACES:
            raise ValueError(f"input_space must be one of {INPUT_SPACES}, got {input_space!r}")
        self.register_buffer("class_weights", torch.ones(num_classes), persistent=False)
        self.val_miou = MeanIoU(num_classes)

    # -- networks ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` ImageNet-normalised RGB → logits ``[B, C, h, w]`` (``output_stride``)."""
        return self.aspp(self.backbone(to_input_space(x, self.hparams.input_space))[-1])

    def msc_forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """DeepLab-v2 MSC: ``[logits@1.0, logits@s for s in msc_scales, max]``.

        Each scaled output keeps its own resolution; the max fuses them after bilinear upsampling
        to the 1.0 logits' size. With the default scales: 4 outputs.
        """
        logits = self(x)
        height, width = x.shape[-2:]
        pyramid = []
        for s in self.hparams.msc_scales:
            size = (int(s * height), int(s * width))
            pyramid.append(self(F.interpolate(x, size=size, mode="bilinear", align_corners=False)))
        if not pyramid:
            return [logits]
        upsampled = [F.interpolate(p, size=logits.shape[-2:], mode="bilinear", align_corners=False)
                     for p in pyramid]
        fused = torch.stack([logits, *upsampled]).max(dim=0).values
        return [logits, *pyramid, fused]

    def msc_loss(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Sum over the MSC outputs of the cross-entropy at each output's resolution.

        ``labels`` ``[B, H, W]`` (255 ignored) are resized by nearest neighbour to each output.
        Returns ``(total, [loss per output])``.
        """
        weight = self.class_weights if self.hparams.class_balanced else None
        parts = []
        for out in self.msc_forward(x):
            target = resize_labels(labels, out.shape[-2:])
            parts.append(F.cross_entropy(out, target, weight=weight, ignore_index=IGNORE_INDEX))
        return torch.stack(parts).sum(), parts

    def predict_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Fused test-time logits ``[B, C, H, W]`` at the image's size (see :func:`multi_scale_logits`)."""
        hp = self.hparams
        return multi_scale_logits(self, image, hp.test_scales, hp.test_flip, hp.test_fuse)

    # -- Lightning hooks --------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if not self.hparams.class_balanced:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "class_frequencies"):
            raise RuntimeError("class_balanced=True needs a datamodule with class_frequencies()")
        freq = torch.as_tensor(np.asarray(datamodule.class_frequencies()), dtype=torch.float32)
        self.class_weights = median_frequency_weights(freq).to(self.device)
        log.info("class-balanced cross-entropy, weights %s", np.round(self.class_weights.cpu().numpy(), 3))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, parts = self.msc_loss(batch["image"], batch["label"])
        batch_size = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        for name, part in zip(self._part_names(len(parts)), parts):
            self.log(f"train/loss_{name}", part, batch_size=batch_size)
        return loss

    def _part_names(self, n: int) -> list[str]:
        scales = [f"{s:g}" for s in (1.0, *self.hparams.msc_scales)]
        return scales + ["max"] if n == len(scales) + 1 else scales[:n]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Single-scale validation (monitoring only; eval_seg gives the paper's protocol)."""
        image, label = batch["image"], batch["label"]
        logits = F.interpolate(self(image), size=image.shape[-2:], mode="bilinear", align_corners=False)
        self.val_miou.update(logits.argmax(1), label)
        self.log("val/miou", self.val_miou, batch_size=image.shape[0])

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        with torch.no_grad():
            return self.predict_logits(batch["image"]).softmax(1)

    def param_groups(self) -> list[dict]:
        """SGD groups: backbone (lr, wd), ASPP weights (×10, wd), ASPP biases (×20, no wd).

        Frozen BN has no parameters; with ``freeze_bn=False`` the BN affine parameters join the
        backbone group.
        """
        hp = self.hparams
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        weights = [c.weight for c in self.aspp.convs]
        biases = [c.bias for c in self.aspp.convs]
        return [
            {"params": backbone, "lr": hp.lr, "weight_decay": hp.weight_decay, "name": "backbone"},
            {"params": weights, "lr": hp.lr * hp.aspp_weight_lr_mult, "weight_decay": hp.weight_decay,
             "name": "aspp_weight"},
            {"params": biases, "lr": hp.lr * hp.aspp_bias_lr_mult, "weight_decay": 0.0, "name": "aspp_bias"},
        ]

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.SGD(self.param_groups(), lr=hp.lr, momentum=hp.momentum)
        schedule = poly_schedule(optimizer, schedule_length(self), hp.poly_power, hp.poly_interval)
        return {"optimizer": optimizer, "lr_scheduler": schedule}


def median_frequency_weights(freq: torch.Tensor) -> torch.Tensor:
    """Median-frequency balancing (Eigen & Fergus): ``w_c = median(f) / f_c``; classes that never
    occur get weight 0. ``freq`` ``[C]`` pixel counts or frequencies → ``[C]``."""
    freq = freq.float()
    present = freq > 0
    weights = torch.zeros_like(freq)
    if present.any():
        weights[present] = freq[present].median() / freq[present]
    return weights


def output_size(size: int) -> int:
    """Logit size of DeepLab-v2 (Caffe arithmetic) for an input side ``size``: 321 → 41, 513 → 65."""
    size = (size + 2 * 3 - 7) // 2 + 1  # conv1 7×7 stride 2 pad 3
    size = math.ceil((size + 2 * 1 - 3) / 2) + 1  # ceil-mode max-pool 3×3 stride 2 pad 1
    return (size - 1) // 2 + 1  # layer2's strided 1×1 conv


def load_deeplab(checkpoint: str | os.PathLike, map_location: str = "cpu", expected: dict | None = None,
                 **overrides) -> DeepLabV2:
    """A trained DeepLab-v2 from our Lightning checkpoint (never re-fetches the initial weights), read
    as data only; its hyper-parameters must match ``expected`` (e.g. the configured ``depth``) and
    its weights must be finite (:func:`advcam_pl.training.checkpoint.load_trained`)."""
    from advcam_pl.training.checkpoint import load_trained

    model = load_trained(DeepLabV2, checkpoint, what="segmentation checkpoint", remedy="run stage train_seg first",
                         expected=expected, configured_by="model.module", pretrained=None, **overrides)
    return model.to(map_location)
