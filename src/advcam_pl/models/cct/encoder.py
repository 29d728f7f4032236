"""CCT's encoder (official ``models/encoder.py``): a ResNet at output stride 8 + a PSP module.

Backbone: :class:`~advcam_pl.models.resnet.ResNet` with trainable ``nn.BatchNorm2d``, strides
``(2, 2, 1, 1)`` and dilations ``(1, 1, 2, 4)``, where — as in torchvision's
``replace_stride_with_dilation`` and CCT's ``deepbase_resnet50_dilated8`` (``multi_grid=None``) —
the first block of layer3/layer4 keeps the previous dilation on the conv that used to stride
(1 and 2), the other blocks use 2 and 4.

Stem: torchvision's 7×7 conv by default, so that ``pretrained: imagenet`` loads torchvision's
ImageNet ResNet (every tensor). CCT's official weights are torchcv's *deep-stem* ResNet-50
(three 3×3 convs 3→64/s2, 64→64, 64→128, layer1 fed 128 channels), which cannot be downloaded
here: ``deep_stem=True`` builds that stem and loads those weights from a local file
(``3x3resnet50-imagenet.pth``). The log says which one a run used.

PSP (bins 1, 2, 3, 6): per bin adaptive average pool → 1×1 conv ``C → C/4`` (no bias) → BN → ReLU
→ bilinear upsample (``align_corners=False``); concat with the features → 3×3 conv
``2C → C/4`` (no bias) → BN → ReLU. ``[B, 3, H, W]`` → ``z`` ``[B, C/4, H/8, W/8]``: 512 channels for
ResNet-50 (40×40 for a 320 crop), 23,073,792 PSP parameters.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from advcam_pl.models.resnet import ResNet, output_stride_layout
from advcam_pl.models.weights import load_backbone_weights

log = logging.getLogger(__name__)


class PSPModule(nn.Module):
    """Pyramid pooling: ``[B, C, h, w]`` → ``[B, out_channels, h, w]`` (``out_channels = C / len(bins)``
    unless given)."""

    def __init__(self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6), out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or in_channels // len(bins)
        self.out_channels = out_channels
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            )
            for b in bins
        )
        self.bottleneck = nn.Sequential(
            nn.Conv2d(in_channels + out_channels * len(bins), out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        size = features.shape[-2:]
        pyramid = [features]
        pyramid += [F.interpolate(stage(features), size=size, mode="bilinear", align_corners=False)
                    for stage in self.stages]  # fmt: skip
        return self.bottleneck(torch.cat(pyramid, dim=1))


def keep_previous_dilation(layer: nn.Sequential, dilation: int) -> None:
    """Give the first block's first 3×3 conv (the one a stride-2 layer strides with) ``dilation``."""
    conv = next(m for m in layer[0].modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)


def use_deep_stem(backbone: ResNet) -> None:
    """Replace the 7×7 stem by torchcv's deep stem (3×3 convs 3→64/s2, 64→64, 64→128 with BN + ReLU;
    ``conv1`` holds the first two and the last conv, ``bn1`` its BN) and feed layer1 128 channels."""
    if backbone.depth < 50:
        raise ValueError(f"the deep stem is defined for bottleneck ResNets (depth >= 50), got {backbone.depth}")
    backbone.conv1 = nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.Conv2d(64, 128, 3, padding=1, bias=False),
    )  # fmt: skip
    backbone.bn1 = nn.BatchNorm2d(128)
    block = backbone.layer1[0]
    block.conv1 = nn.Conv2d(128, block.conv1.out_channels, 1, bias=False)
    block.downsample[0] = nn.Conv2d(128, block.downsample[0].out_channels, 1, bias=False)
    for m in [*backbone.conv1, block.conv1, block.downsample[0]]:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


# torchcv's deep-stem names (CCT's 3x3resnet50-imagenet.pth, optionally under "prefix.") → ours.
_DEEP_STEM_NAMES = {"conv1": "conv1.0", "bn1": "conv1.1", "conv2": "conv1.3", "bn2": "conv1.4",
                    "conv3": "conv1.6", "bn3": "bn1"}  # fmt: skip


def deep_stem_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchcv deep-stem ResNet keys (``conv1…conv3``, ``bn1…bn3``, ``prefix.`` dropped) to
    :func:`use_deep_stem`'s; layer keys pass unchanged."""
    out = {}
    for name, tensor in state.items():
        name = name.removeprefix("module.").removeprefix("prefix.")
        head, _, rest = name.partition(".")
        out[f"{_DEEP_STEM_NAMES[head]}.{rest}" if head in _DEEP_STEM_NAMES else name] = tensor
    return out


class CCTEncoder(nn.Module):
    """Backbone + PSP: ``[B, 3, H, W]`` → ``[B, out_channels, ⌈H/s⌉, ⌈W/s⌉]`` (``s = output_stride``, 8).

    Args:
        depth: ResNet depth (50 official; 18 for the tiny config).
        deep_stem: torchcv's deep stem (official) instead of torchvision's 7×7 stem.
        pretrained: ``"imagenet"`` (torchvision's weights; 7×7 stem only), a weights file, or ``None``.
        psp_bins, psp_channels: PSP bins and width (``None``: backbone channels / number of bins).
        output_stride: 8 (official: layer3/layer4 dilated) or 16 (layer4 unstrided, no dilation: the
            CAM classifier's layout, so an encoder started from it sees the geometry it was trained with;
            a quarter of layer3's and layer4's cells; the CPU demo).
    """

    def __init__(
        self,
        depth: int = 50,
        deep_stem: bool = False,
        pretrained: str | os.PathLike | None = "imagenet",
        psp_bins: Sequence[int] = (1, 2, 3, 6),
        psp_channels: int | None = None,
        output_stride: int = 8,
    ):
        super().__init__()
        if deep_stem and pretrained == "imagenet":
            raise ValueError(
                "pretrained=imagenet means torchvision's ResNet, which has the 7×7 stem; for the deep stem pass "
                "CCT's torchcv weights as a file (pretrained=/path/to/3x3resnet50-imagenet.pth, from the CCT "
                "repository's release v0.1), or set deep_stem=false"
            )
        strides, dilations = output_stride_layout(output_stride)
        self.output_stride = output_stride
        self.backbone = ResNet(depth, strides=strides, dilations=dilations, norm_layer=nn.BatchNorm2d)
        for i, layer in ((2, self.backbone.layer3), (3, self.backbone.layer4)):
            if strides[i] == 1:
                keep_previous_dilation(layer, dilations[i - 1])
        if deep_stem:
            use_deep_stem(self.backbone)
        self.psp = PSPModule(self.backbone.out_channels[-1], psp_bins, psp_channels)
        self.out_channels = self.psp.out_channels
        self.weights_source = load_encoder_weights(self.backbone, pretrained, depth, deep_stem)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.psp(self.backbone(x)[-1])


def load_encoder_weights(
    backbone: ResNet, pretrained: str | os.PathLike | None, depth: int, deep_stem: bool
) -> str:
    """Fill every backbone tensor from ``pretrained`` (:func:`~advcam_pl.models.weights.load_backbone_weights`:
    ``"imagenet"``, a weights file, one of our checkpoints, e.g. the CAM classifier's with
    ``semi.init_from_cam``, or ``None``); returns (and logs) where they came from.

    Raises unless the load filled every tensor (a partial or silent random init is a known failure
    of the official code, whose missing weights file leaves the backbone random), and for a checkpoint
    of another ResNet depth. Strides and dilations are no weights: a stride-16 classifier's tensors fill
    this stride-8 backbone.
    """
    stem = "deep 3×3 stem" if deep_stem else "7×7 stem"
    weights = load_backbone_weights(backbone, pretrained, depth, "CCT encoder",
                                    rename=deep_stem_state_dict if deep_stem else None)
    if weights.loaded == 0:
        source = f"random init (ResNet-{depth}, {stem})"
    else:
        source = f"{weights.source} (ResNet-{depth}, {stem}, {weights.loaded} / {weights.expected} tensors)"
    message = f"CCT encoder backbone: {source}"
    print(message)
    log.info(message)
    return source
