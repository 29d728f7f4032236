"""One ResNet for every stage: strides, dilations and the Caffe layout are arguments.

The CAM classifier and IRN use ResNet-50 with strides (2, 2, 2, 1) (output stride 16, no
dilation); DeepLab-v2 uses ResNet-101 in the Caffe layout (stride on the first 1×1 conv,
ceil-mode max-pool) with layer3/layer4 dilated 2/4 (output stride 8). Parameter names follow
torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ...), so
torchvision's ImageNet weights load directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

NormLayer = Callable[[int], nn.Module]

LAYERS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, norm_layer: NormLayer = FrozenBatchNorm2d,
                 stride_in_1x1: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 → 3×3 → 1×1; the stride sits on the 3×3 (torchvision) or the first 1×1 (Caffe)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, norm_layer: NormLayer = FrozenBatchNorm2d,
                 stride_in_1x1: bool = False):
        super().__init__()
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, s1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, s3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = norm_layer(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = norm_layer(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# Output stride → ``(strides, dilations)`` for :class:`ResNet`: 8 = DeepLab-v2's / CCT's (layer3/layer4
# dilated 2/4); 16 = the CAM classifier's and IRN's (layer4 unstrided, no dilation), what a network
# started from the CAM classifier needs to see the geometry its weights were trained with.
OUTPUT_STRIDE_LAYOUTS: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    8: ((2, 2, 1, 1), (1, 1, 2, 4)),
    16: ((2, 2, 2, 1), (1, 1, 1, 1)),
}


def output_stride_layout(output_stride: int, key: str = "output_stride") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(strides, dilations)`` of :data:`OUTPUT_STRIDE_LAYOUTS`; an unknown stride names ``key``."""
    if output_stride not in OUTPUT_STRIDE_LAYOUTS:
        raise ValueError(f"{key} must be one of {sorted(OUTPUT_STRIDE_LAYOUTS)}, got {output_stride!r}")
    return OUTPUT_STRIDE_LAYOUTS[output_stride]


class ResNet(nn.Module):
    """ResNet backbone without the ImageNet head.

    Args:
        depth: 18, 34, 50, 101 or 152.
        strides: strides of (conv1, layer2, layer3, layer4); the max-pool always halves.
            (2, 2, 2, 1) gives output stride 16, (2, 2, 1, 1) with dilations (1, 1, 2, 4) gives 8.
        dilations: dilation of (layer1, layer2, layer3, layer4).
        stride_in_1x1: Caffe layout (DeepLab-v2): the block's stride on its first 1×1 conv.
        ceil_mode: Caffe's ceil-mode max-pool.
        norm_layer: FrozenBatchNorm2d by default (statistics and affine fixed, whatever the
            train/eval mode); pass ``nn.BatchNorm2d`` to fine-tune BN.

    ``forward`` returns the five taps ``[conv1+pool, layer1, layer2, layer3, layer4]``:
    ``[B, 64, H/4, W/4]`` (after the max-pool), then ``[B, C_i, H/s_i, W/s_i]``; ``out_channels``
    lists the C_i.
    """

    def __init__(self, depth: int = 50, strides: Sequence[int] = (2, 2, 2, 1),
                 dilations: Sequence[int] = (1, 1, 1, 1), stride_in_1x1: bool = False,
                 ceil_mode: bool = False, norm_layer: NormLayer = FrozenBatchNorm2d):
        super().__init__()
        if depth not in LAYERS:
            raise ValueError(f"ResNet depth must be one of {sorted(LAYERS)}, got {depth}")
        if len(strides) != 4 or len(dilations) != 4:
            raise ValueError(f"strides and dilations need 4 entries, got {strides} and {dilations}")
        block = Bottleneck if depth >= 50 else BasicBlock
        self.depth = depth
        self._norm_layer = norm_layer
        self._stride_in_1x1 = stride_in_1x1
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, strides[0], padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=ceil_mode)
        n = LAYERS[depth]
        self.layer1 = self._make_layer(block, 64, n[0], 1, dilations[0])
        self.layer2 = self._make_layer(block, 128, n[1], strides[1], dilations[1])
        self.layer3 = self._make_layer(block, 256, n[2], strides[2], dilations[2])
        self.layer4 = self._make_layer(block, 512, n[3], strides[3], dilations[3])
        self.out_channels = (64, 64 * block.expansion, 128 * block.expansion,
                             256 * block.expansion, 512 * block.expansion)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                self._norm_layer(planes * block.expansion),
            )
        # Like DeepLab-v2 and torchvision, the first block of a dilated layer uses the same dilation.
        layers = [block(self.inplanes, planes, stride, dilation, downsample, self._norm_layer, self._stride_in_1x1)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, dilation, None, self._norm_layer, self._stride_in_1x1)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` → ``[B, 64, H/4, W/4]`` (conv1, bn, relu, max-pool)."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x0 = self.stem(x)
        x1 = self.layer1(x0)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return [x0, x1, x2, x3, x4]


def set_requires_grad(module: nn.Module, requires_grad: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(requires_grad)
