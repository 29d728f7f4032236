"""CCT's network: shapes, the official structure and parameter counts, the decoder head's init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advcam_pl.errors import ArchitectureMismatchError
from advcam_pl.models.cam_classifier import CAMClassifier
from advcam_pl.models.cct.decoders import (
    AUX_TYPES,
    OFFICIAL_AUX_COUNTS,
    DecoderHead,
    PixelShuffleBlock,
    build_aux_decoders,
)
from advcam_pl.models.cct.encoder import CCTEncoder, PSPModule, deep_stem_state_dict
from advcam_pl.models.cct.inference import single_scale_predict
from advcam_pl.models.cct.network import CCTNet
from advcam_pl.models.cct.perturbations import Guidance


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def official() -> CCTNet:
    """The official configuration (ResNet-50, PSP, K = 30), randomly initialised; built, rarely run."""
    torch.manual_seed(0)
    return CCTNet(pretrained=None)


def test_official_structure_and_parameter_counts(official):
    names = [type(d).__name__ for d in official.aux_decoders]
    expected = [AUX_TYPES[t].__name__ for t, n in OFFICIAL_AUX_COUNTS.items() for _ in range(n)]
    assert names == expected and len(names) == 30
    assert names[:2] == ["VATDecoder"] * 2 and names[-6:] == ["FeatureNoiseDecoder"] * 6
    assert n_params(official.main_decoder) == 16_296
    assert all(n_params(d) == 16_296 for d in official.aux_decoders)
    assert n_params(official.encoder.psp) == 23_073_792
    assert n_params(official.encoder.backbone) == 23_508_032  # torchvision ResNet-50 without fc
    assert n_params(official) == 47_087_000
    # the optimiser's two groups cover every parameter exactly once
    groups = [list(official.head_parameters()), list(official.backbone_parameters())]
    assert sum(len(g) for g in groups) == len(list(official.parameters()))
    assert not {id(p) for p in groups[0]} & {id(p) for p in groups[1]}


def test_output_stride_8_with_torchvision_style_dilation(official):
    backbone = official.encoder.backbone
    assert [b.conv2.dilation[0] for b in backbone.layer3] == [1, 2, 2, 2, 2, 2]
    assert [b.conv2.dilation[0] for b in backbone.layer4] == [2, 4, 4]
    assert all(b.conv2.padding == b.conv2.dilation for b in [*backbone.layer3, *backbone.layer4])
    assert backbone.layer3[0].downsample[0].stride == (1, 1) and backbone.layer4[0].conv2.stride == (1, 1)
    assert isinstance(backbone.bn1, nn.BatchNorm2d)  # trainable BN, not frozen
    with torch.no_grad():
        assert official.encoder(torch.randn(2, 3, 64, 64)).shape == (2, 512, 8, 8)
        assert official.encoder.eval()(torch.randn(1, 3, 72, 72)).shape == (1, 512, 9, 9)
    official.train()


def test_output_stride_16_is_the_cam_classifiers_layout_and_its_heads_upsample_by_16():
    torch.manual_seed(0)
    net = CCTNet(depth=18, pretrained=None, psp_channels=16, output_stride=16, aux_counts={"feature_noise": 1})
    backbone = net.encoder.backbone
    assert backbone.layer3[0].conv1.stride == (2, 2) and backbone.layer4[0].conv1.stride == (1, 1)
    assert {m.dilation for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)} == {(1, 1)}  # as the classifier
    with torch.no_grad():
        assert net.encoder(torch.randn(2, 3, 64, 96)).shape == (2, 16, 4, 6)
        assert net(torch.randn(2, 3, 64, 96)).shape == (2, 21, 64, 96)
    with pytest.raises(ValueError, match="output_stride must be one of \\[8, 16\\], got 32"):
        CCTEncoder(depth=18, pretrained=None, output_stride=32)


def test_every_head_maps_40x40_features_to_a_320_crop():
    torch.manual_seed(0)
    main = DecoderHead(512, 21)
    aux = build_aux_decoders(dict.fromkeys(AUX_TYPES, 1), 512, 21)
    z = torch.rand(2, 512, 40, 40)
    main_out = main(z)
    assert main_out.shape == (2, 21, 320, 320)
    guide = Guidance(main_out)
    for decoder in aux:
        assert decoder(z, guide).shape == (2, 21, 320, 320), type(decoder).__name__
    assert main(torch.rand(1, 512, 41, 41)).shape == (1, 21, 328, 328)


def test_psp_keeps_the_size_and_quarters_the_channels():
    psp = PSPModule(64)
    assert psp(torch.randn(2, 64, 5, 7)).shape == (2, 16, 5, 7)
    assert [s[0].output_size for s in psp.stages] == [1, 2, 3, 6]


def test_eval_pads_to_a_multiple_of_8_and_crops_back():
    seen = []

    def net(x):  # a stand-in for CCT's eval forward, which needs multiples of 8
        seen.append(tuple(x.shape[-2:]))
        assert x.shape[-2] % 8 == 0 and x.shape[-1] % 8 == 0
        return x[:, :1].repeat(1, 21, 1, 1)

    image = torch.randn(1, 3, 333, 500)
    out = single_scale_predict(net, image)
    assert seen == [(336, 504)] and out.shape == (1, 21, 333, 500)
    torch.testing.assert_close(out[0, 0], image[0, 0])  # reflect padding only at the bottom/right


def test_head_outputs_are_non_negative_unless_the_final_relu_is_switched_off():
    torch.manual_seed(0)
    z = torch.randn(2, 32, 4, 4)
    assert DecoderHead(32, 21)(z).min() >= 0
    assert DecoderHead(32, 21, final_relu=False)(z).min() < 0


def test_icnr_shuffle_convs_start_as_nearest_neighbour_upsampling():
    torch.manual_seed(0)
    head = DecoderHead(512, 21)
    blocks = [m for m in head if isinstance(m, PixelShuffleBlock)]
    assert len(blocks) == 3 and head[0].bias is None and head[0].weight.shape == (21, 512, 1, 1)
    for block in blocks:
        weight = block[0].weight.view(21, 4, 21)  # output channel 4j + r
        assert torch.equal(weight, weight[:, :1].expand_as(weight))
        assert 0.2 < weight[:, 0].std() < 0.4  # kaiming normal, fan_in 21: sqrt(2/21) = 0.31
    block = blocks[0]
    with torch.no_grad():
        block[0].bias.zero_()
        out = block(torch.randn(1, 21, 5, 5))
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        torch.testing.assert_close(out[..., dy::2, dx::2], out[..., 0::2, 0::2])


def test_deep_stem_has_the_official_layout_and_loads_torchcv_names(tmp_path):
    torch.manual_seed(0)
    encoder = CCTEncoder(deep_stem=True, pretrained=None)
    backbone = encoder.backbone
    assert [m.out_channels for m in backbone.conv1 if isinstance(m, nn.Conv2d)] == [64, 64, 128]
    assert backbone.conv1[0].stride == (2, 2) and backbone.layer1[0].conv1.in_channels == 128
    assert n_params(backbone) == 23_508_032 - 9_536 + 112_832 + 20_480  # deep stem, layer1 fed 128 ch
    # CCT's torchcv file names the stem conv1-3 / bn1-3 (loaded with a "prefix." remap)
    ours_to_torchcv = {v: k for k, v in {"conv1": "conv1.0", "bn1": "conv1.1", "conv2": "conv1.3",
                                         "bn2": "conv1.4", "conv3": "conv1.6", "bn3": "bn1"}.items()}
    torchcv = {}
    for name, tensor in backbone.state_dict().items():
        for ours, theirs in ours_to_torchcv.items():
            if name.startswith(ours + "."):
                name = theirs + name[len(ours):]
                break
        torchcv[name] = tensor + 1.0 if tensor.is_floating_point() else tensor
    torchcv["fc.weight"] = torch.zeros(1000, 2048)
    assert set(deep_stem_state_dict(torchcv)) - {"fc.weight"} == set(backbone.state_dict())
    path = tmp_path / "3x3resnet50-imagenet.pth"
    torch.save(torchcv, path)
    loaded = CCTEncoder(deep_stem=True, pretrained=str(path)).backbone.state_dict()
    torch.testing.assert_close(loaded["conv1.6.weight"], backbone.conv1[6].weight + 1.0)
    torch.testing.assert_close(loaded["bn1.running_mean"], backbone.bn1.running_mean + 1.0)


def test_imagenet_weights_with_the_deep_stem_are_refused_with_a_hint():
    with pytest.raises(ValueError, match="3x3resnet50-imagenet.pth"):
        CCTEncoder(depth=50, deep_stem=True, pretrained="imagenet")


def test_a_weights_file_that_fills_part_of_the_backbone_is_refused(tmp_path):
    path = tmp_path / "partial.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(RuntimeError, match=r"CCT encoder: loaded 1 / 100 backbone tensors .*refusing"):
        CCTEncoder(depth=18, pretrained=str(path))


def test_the_encoder_starts_from_a_cam_classifier_checkpoint(tmp_path):
    """semi.init_from_cam: the stride-16 classifier's ResNet fills the stride-8, dilated encoder (a stride
    or a dilation is no weight); a classifier of another depth is refused, naming both."""
    torch.manual_seed(0)
    classifier = CAMClassifier(depth=18, pretrained=None, norm="batch")
    path = tmp_path / "cam_classifier.ckpt"
    torch.save({"state_dict": classifier.state_dict(), "hyper_parameters": dict(classifier.hparams)}, path)
    encoder = CCTEncoder(depth=18, pretrained=str(path), psp_channels=32)
    assert encoder.weights_source == f"{path} (ResNet-18, 7×7 stem, 100 / 100 tensors)"
    assert encoder.backbone.layer4[0].conv2.dilation == (4, 4)
    ours = encoder.backbone.state_dict()
    for name, tensor in classifier.backbone.state_dict().items():
        torch.testing.assert_close(ours[name], tensor, msg=name)
    resnet50 = tmp_path / "resnet50_classifier.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"depth": 50}}, resnet50)
    with pytest.raises(ArchitectureMismatchError, match=r"holds a ResNet-50 backbone .* configured as ResNet-18"):
        CCTEncoder(depth=18, pretrained=str(resnet50))
