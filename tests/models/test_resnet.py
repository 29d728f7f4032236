"""The shared ResNet backbone: output strides, the Caffe layout, torchvision names, frozen BN."""

import pytest
import torch
import torchvision
from torchvision.ops import FrozenBatchNorm2d

from advcam_pl.models.resnet import ResNet


def torchvision_names(depth: int) -> set[str]:
    model = getattr(torchvision.models, f"resnet{depth}")()
    return {k for k in model.state_dict() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}


@torch.no_grad()
@pytest.mark.parametrize("size", [(375, 500), (500, 375)])
def test_stride16_taps_are_ceil_of_input_over_stride(size):
    backbone = ResNet(18, strides=(2, 2, 2, 1)).eval()
    taps = backbone(torch.zeros(1, 3, *size))
    h, w = size
    # Every stride-2 conv and the max-pool round up here: ⌈375/4⌉ = 94, ⌈500/16⌉ = 32, ...
    expected = [(94, 125), (94, 125), (47, 63), (24, 32), (24, 32)]
    if h > w:
        expected = [s[::-1] for s in expected]
    assert [tuple(t.shape[-2:]) for t in taps] == expected
    assert [t.shape[1] for t in taps] == list(backbone.out_channels) == [64, 64, 128, 256, 512]
    assert taps[-1].shape[-2:] == (-(-h // 16), -(-w // 16))


@torch.no_grad()
def test_resnet50_stride16_has_2048_channels():
    backbone = ResNet(50, strides=(2, 2, 2, 1)).eval()
    out = backbone(torch.zeros(1, 3, 200, 120))[-1]
    assert out.shape == (1, 2048, 13, 8)


@torch.no_grad()
def test_caffe_resnet101_dilated_has_output_stride_8():
    backbone = ResNet(101, strides=(2, 2, 1, 1), dilations=(1, 1, 2, 4), stride_in_1x1=True, ceil_mode=True)
    assert backbone.layer2[0].conv1.stride == (2, 2) and backbone.layer2[0].conv2.stride == (1, 1)
    assert backbone.layer3[0].conv2.dilation == (2, 2) and backbone.layer4[-1].conv2.dilation == (4, 4)
    assert backbone.layer3[0].conv1.stride == backbone.layer4[0].conv1.stride == (1, 1)
    taps = backbone.eval()(torch.zeros(1, 3, 65, 65))
    # conv1 65 → 33, ceil-mode pool → 17, layer2 → 9 = ⌈65/8⌉; layer3/4 keep 9 (dilated).
    assert [t.shape[-1] for t in taps] == [17, 17, 9, 9, 9]
    assert taps[-1].shape[1] == 2048


@pytest.mark.parametrize("depth", [18, 50])
def test_parameter_names_match_torchvision(depth):
    own = {k for k in ResNet(depth).state_dict()}
    assert own == torchvision_names(depth)


def test_frozen_bn_ignores_train_mode():
    torch.manual_seed(0)
    backbone = ResNet(18)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules()) == 20
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        train_out = backbone.train()(x)[-1]
        eval_out = backbone.eval()(x)[-1]
    torch.testing.assert_close(train_out, eval_out, rtol=0, atol=0)
