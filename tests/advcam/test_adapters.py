"""as_cam_model: torchvision, timm-style and generic classifiers as features + 1×1 classifier."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from advcam_testing import TinyCAMNet, relative_error
from torch import nn
from torchvision.models.convnext import CNBlockConfig

from advcam_pl.advcam import adv_climb, compute_cam
from advcam_pl.advcam.adapters import CAMAdapter, NonLinearHeadError, as_cam_model

NUM_CLASSES = 5
CLIMB = dict(steps=3, scales=(1.0, 0.5))


class HandBuilt(nn.Module):
    """The reference: independent copies of a network's feature layers and its Linear as a conv."""

    def __init__(self, layers: list[nn.Module], linear: nn.Linear):
        super().__init__()
        self.body = copy.deepcopy(nn.Sequential(*layers))
        self.classifier = nn.Conv2d(linear.in_features, linear.out_features, 1, bias=False)
        with torch.no_grad():
            self.classifier.weight.copy_(linear.weight[:, :, None, None])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=NUM_CLASSES).eval()


def mobilenet_v2() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=NUM_CLASSES, width_mult=0.25)
    return calibrated_batchnorm(model)


def calibrated_batchnorm(model: nn.Module) -> nn.Module:
    """BatchNorm statistics of one random batch: a random init's unit running variance shrinks
    MobileNetV2's activations ~10× per stage, to ~1e-9 at its last layer."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        model.train()(torch.randn((8, 3, 64, 64), generator=torch.Generator().manual_seed(3)))
    return model.eval()


def resnet_layers(m: nn.Module) -> list[nn.Module]:
    return [m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4]


CASES = {
    "resnet18": (resnet18, resnet_layers, lambda m: m.fc),
    "mobilenet_v2": (mobilenet_v2, lambda m: [m.features], lambda m: m.classifier[1]),
}


def image(size: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn((3, size, size), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(CASES))
def test_adapted_torchvision_model_gives_the_hand_built_maps(name):
    make, layers, linear = CASES[name]
    model = make()
    adapted = as_cam_model(model)
    reference = HandBuilt(layers(model), linear(model))
    x = image()
    classes = [0, 3]
    for fn in (compute_cam, adv_climb):
        kw = {"scales": (1.0, 0.5)} if fn is compute_cam else CLIMB
        got, want = fn(adapted, x, classes, **kw), fn(reference, x, classes, **kw)
        assert got.high_res.shape == (2, 64, 64)
        assert want.high_res.max() > 0.5  # maps with content, not two empty ones
        assert relative_error(got.high_res, want.high_res) < 1e-5, fn.__name__
        assert relative_error(got.cam, want.cam) < 1e-5, fn.__name__


@pytest.mark.parametrize("name", sorted(CASES))
def test_adapter_views_the_users_weights_without_copying(name):
    make, _, linear = CASES[name]
    model = make()
    adapted = as_cam_model(model)
    head = linear(model)
    assert adapted.classifier.weight.shape == (NUM_CLASSES, head.in_features, 1, 1)
    assert adapted.classifier.weight.data_ptr() == head.weight.data_ptr()
    assert {id(p) for p in adapted.parameters()} == {id(p) for p in model.parameters()}
    with torch.no_grad():  # a change to the user's model is seen by the adapter, and back
        head.weight[0, 0] = 123.0
    assert adapted.classifier.weight[0, 0, 0, 0] == 123.0


@pytest.mark.parametrize("name", sorted(CASES))
def test_adapter_logits_equal_the_models(name):
    model = CASES[name][0]()
    adapted = as_cam_model(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert relative_error(adapted(x), model(x)) < 1e-5


@pytest.mark.parametrize("name", sorted(CASES))
def test_fast_equals_reference_on_an_adapted_model_at_stride_16(name):
    adapted = as_cam_model(CASES[name][0](), output_stride=16)
    x = image(48, seed=2)
    fast = adv_climb(adapted, x, [1, 4], impl="fast", **CLIMB)
    reference = adv_climb(adapted, x, [1, 4], impl="reference", **CLIMB)
    assert fast.high_res.max() > 0.5
    assert relative_error(fast.high_res, reference.high_res) < 1e-4
    assert relative_error(fast.cam, reference.cam) < 1e-4


def test_climb_leaves_the_users_model_as_it_was():
    model = resnet18().train()
    state = copy.deepcopy(model.state_dict())
    adv_climb(as_cam_model(model), image(32), [0], impl="reference", steps=2, scales=(1.0,))
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_output_stride_16_is_torchvisions_dilated_layer4_on_shared_weights():
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None, num_classes=NUM_CLASSES).eval()
    dilated = torchvision.models.resnet50(weights=None, num_classes=NUM_CLASSES,
                                          replace_stride_with_dilation=[False, False, True]).eval()
    dilated.load_state_dict(model.state_dict())
    adapted = as_cam_model(model, output_stride=16)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got = adapted.features(x)
        want = nn.Sequential(*resnet_layers(dilated))(x)
        native = nn.Sequential(*resnet_layers(model))(x)
    assert got.shape == (1, 2048, 4, 4) and native.shape == (1, 2048, 2, 2)
    assert relative_error(got, want) < 1e-5
    # the user's model keeps its stride, and the dilated convs share its parameters
    assert model.layer4[0].conv2.stride == (2, 2) and model.layer4[1].conv2.dilation == (1, 1)
    assert {id(p) for p in adapted.parameters()} == {id(p) for p in model.parameters()}


def test_output_stride_16_on_a_basic_block_resnet_matches_a_hand_dilated_copy():
    model = resnet18()
    adapted = as_cam_model(model, output_stride=16)
    hand = copy.deepcopy(model)
    hand.layer4[0].conv1.stride = hand.layer4[0].downsample[0].stride = (1, 1)
    for conv in (hand.layer4[1].conv1, hand.layer4[1].conv2):
        conv.dilation, conv.padding = (2, 2), (2, 2)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got = adapted.features(x)
        assert got.shape == (1, 512, 4, 4)
        assert relative_error(got, nn.Sequential(*resnet_layers(hand))(x)) < 1e-5
        model.layer4[1].conv2.weight.mul_(2)  # the adapter follows the user's weights
        assert relative_error(adapted.features(x), got) > 1e-3
    assert model.layer4[0].conv1.stride == (2, 2) and model.layer4[1].conv1.dilation == (1, 1)


def test_output_stride_16_on_mobilenet_v2_is_the_a_trous_network_on_shared_weights():
    """DeepLab's rule (last strided conv at stride 1, later spatial convs dilated by 2): without
    global pooling inside the features (MobileNetV2 has none), the stride-16 map sampled at every
    other position is exactly the stride-32 map."""
    model = mobilenet_v2()
    adapted = as_cam_model(model, output_stride=16)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        got, native = adapted.features(x), model.features(x)
        assert got.shape == (2, 1280, 4, 4) and native.shape == (2, 1280, 2, 2)
        assert relative_error(got[:, :, ::2, ::2], native) < 1e-5
        assert relative_error(got[:, :, 1::2, 1::2], native) > 1e-2  # new positions, not copies
        assert relative_error(adapted(x), model(x)) > 1e-3  # the logits now pool the finer map
    # the user's model keeps its stride, and the adapter holds no parameter of its own
    assert model.features[14].conv[1][0].stride == (2, 2)
    assert all(m.dilation == (1, 1) for m in model.modules() if isinstance(m, nn.Conv2d))
    assert {id(p) for p in adapted.parameters()} == {id(p) for p in model.parameters()}
    with torch.no_grad():
        model.features[16].conv[1][0].weight.mul_(2)  # the adapter follows the user's weights
        assert relative_error(adapted.features(x), got) > 1e-3


class TinyTimmLike(nn.Module):
    """timm's interface: forward_features → [B, K, h, w], forward_head, get_classifier()."""

    def __init__(self, num_classes: int = NUM_CLASSES, head_norm: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 4, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())
        self.norm = nn.LayerNorm(16) if head_norm else nn.Identity()
        self.head_drop = nn.Dropout(0.3)
        self.fc = nn.Linear(16, num_classes)

    def forward_features(self, x):
        return self.stem(x)

    def forward_head(self, x):
        return self.fc(self.head_drop(self.norm(x.mean((2, 3)))))

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def test_timm_style_model_is_adapted_by_its_interface():
    model = TinyTimmLike()
    adapted = as_cam_model(model)
    assert adapted.classifier.weight.data_ptr() == model.fc.weight.data_ptr()
    reference = HandBuilt([model.stem], model.fc)
    x = image(64)
    assert relative_error(adv_climb(adapted, x, [2], **CLIMB).high_res,
                          adv_climb(reference, x, [2], **CLIMB).high_res) < 1e-5


def test_timm_style_model_whose_head_normalises_is_refused_by_the_probe():
    with pytest.raises(NonLinearHeadError, match="CAM is undefined for TinyTimmLike.*does not reproduce its logits"):
        as_cam_model(TinyTimmLike(head_norm=True))


def test_generic_feature_extractor_and_linear_head():
    torch.manual_seed(0)
    extractor = nn.Sequential(nn.Conv2d(3, 12, 3, 4, 1), nn.ReLU(), nn.Conv2d(12, 12, 3, 2, 1), nn.ReLU())
    head = nn.Sequential(nn.Dropout(0.5), nn.Linear(12, NUM_CLASSES))
    adapted = as_cam_model(extractor, head)
    assert isinstance(adapted, CAMAdapter)
    assert adapted.classifier.weight.data_ptr() == head[1].weight.data_ptr()
    x = image(64)
    got = compute_cam(adapted, x, [0, 1], scales=(1.0,))
    want = compute_cam(HandBuilt([extractor], head[1]), x, [0, 1], scales=(1.0,))
    assert relative_error(got.high_res, want.high_res) < 1e-6
    # a callable extractor works as well
    assert relative_error(compute_cam(as_cam_model(extractor.forward, head[1]), x, [0, 1], scales=(1.0,)).high_res,
                          want.high_res) < 1e-6


def test_model_with_the_interface_is_returned_unchanged():
    model = TinyCAMNet()
    assert as_cam_model(model) is model


def test_mobilenet_v3_head_is_refused_with_the_reason():
    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=NUM_CLASSES)
    with pytest.raises(NonLinearHeadError) as err:
        as_cam_model(model)
    message = str(err.value)
    assert "CAM is undefined for MobileNetV3" in message
    assert "Linear → Hardswish → Dropout → Linear" in message
    assert "not linear in the pooled features" in message


def test_convnext_pooled_layernorm_is_refused_with_the_reason():
    model = torchvision.models.ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)],
                                        num_classes=NUM_CLASSES)
    with pytest.raises(NonLinearHeadError, match="CAM is undefined for ConvNeXt.*LayerNorm2d.*normalises the pooled"):
        as_cam_model(model)


def test_a_resnet_whose_forward_is_not_avgpool_then_fc_is_caught_by_the_probe():
    class MaxPooledResNet(torchvision.models.ResNet):
        def forward(self, x):
            f = nn.Sequential(*resnet_layers(self))(x)
            return self.fc(f.amax((2, 3)))

    torch.manual_seed(0)
    model = MaxPooledResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=NUM_CLASSES)
    with pytest.raises(NonLinearHeadError, match="does not reproduce its logits"):
        as_cam_model(model)
    as_cam_model(model, verify=False)  # the user may insist


def test_unknown_models_and_bad_options_are_named():
    with pytest.raises(TypeError, match="as_cam_model does not know Sequential"):
        as_cam_model(nn.Sequential(nn.Conv2d(3, 4, 1)))
    with pytest.raises(ValueError, match="output_stride=16 is supported for the ResNet family, MobileNetV2 and "
                                         "EfficientNet, not DenseNet"):
        as_cam_model(torchvision.models.densenet121(weights=None, num_classes=NUM_CLASSES), output_stride=16)
    with pytest.raises(ValueError, match="output_stride must be None, 16 or 32"):
        as_cam_model(resnet18(), output_stride=8)
    adapted = as_cam_model(nn.Conv2d(3, 7, 3), nn.Linear(4, NUM_CLASSES))
    with pytest.raises(ValueError, match=r"features must be a \[B, 4, h, w\] map"):
        adapted.features(torch.zeros(1, 3, 8, 8))
