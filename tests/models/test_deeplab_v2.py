"""DeepLab-v2: output stride, ASPP, MSC loss, max fusion, frozen BN, initial-weight loading."""

from __future__ import annotations

import re

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.ops import FrozenBatchNorm2d

from advcam_pl.data.transforms import normalize
from advcam_pl.models.deeplab_v2 import (
    ASPP,
    DeepLabV2,
    load_deeplab,
    median_frequency_weights,
    multi_scale_logits,
    output_size,
    resize_labels,
)
from advcam_pl.models.weights import CAFFE_MEAN_BGR, caffe_to_torchvision, to_input_space


def tiny(**kwargs) -> DeepLabV2:
    return DeepLabV2(**{"depth": 18, "pretrained": None, **kwargs})


def test_output_stride_is_8_with_caffe_arithmetic():
    model = tiny().eval()
    with torch.no_grad():
        taps = model.backbone(torch.zeros(1, 3, 65, 81))
        logits = model(torch.zeros(1, 3, 65, 81))
    assert [t.shape[-1] for t in taps] == [21, 21, 11, 11, 11]  # ceil-mode pool; layer3/4 dilated
    assert logits.shape == (1, 21, output_size(65), output_size(81)) == (1, 21, 9, 11)
    assert output_size(321) == 41 and output_size(513) == 65  # DeepLab-v2's numbers


def test_output_stride_16_is_the_cam_classifiers_layout():
    """Stride 16: layer4 unstrided and undilated, so weights of the CAM classifier (ResNet(strides=(2, 2, 2, 1)))
    see the geometry they were trained with; a bad stride is refused with the key's name."""
    model = tiny(output_stride=16).eval()
    with torch.no_grad():
        taps = model.backbone(torch.zeros(1, 3, 65, 81))
        logits = model(torch.zeros(1, 3, 65, 81))
    assert [t.shape[-1] for t in taps] == [21, 21, 11, 6, 6]
    assert logits.shape == (1, 21, 5, 6)
    assert {m.dilation for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)} == {(1, 1)}
    assert model.backbone.layer4[0].conv1.stride == (1, 1) and model.backbone.layer3[0].conv1.stride == (2, 2)
    with pytest.raises(ValueError, match="model.module.output_stride must be one of \\[8, 16\\], got 32"):
        tiny(output_stride=32)


def test_bottleneck_uses_the_caffe_layout():
    backbone = DeepLabV2(depth=50, pretrained=None).backbone
    block = backbone.layer2[0]
    assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)  # stride on the first 1×1
    assert backbone.maxpool.ceil_mode
    assert backbone.layer3[0].conv2.dilation == (2, 2) and backbone.layer4[0].conv2.dilation == (4, 4)
    assert backbone.layer3[0].conv1.stride == (1, 1)


def test_aspp_sums_four_dilated_branches():
    torch.manual_seed(0)
    aspp = ASPP(8, 21)
    assert [c.dilation for c in aspp.convs] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert all(c.bias.abs().max() == 0 for c in aspp.convs)
    assert 0.007 < torch.cat([c.weight.flatten() for c in aspp.convs]).std() < 0.013  # N(0, 0.01²)
    x = torch.randn(2, 8, 13, 17)
    out = aspp(x)
    assert out.shape == (2, 21, 13, 17)
    torch.testing.assert_close(out, sum(c(x) for c in aspp.convs))


def pil_nearest(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """kazuto1011/deeplab-pytorch's resize_labels: PIL NEAREST per image."""
    out = [np.asarray(Image.fromarray(lab.numpy().astype(np.uint8)).resize(size[::-1], Image.NEAREST))
           for lab in labels]
    return torch.from_numpy(np.stack(out)).long()


def test_msc_gives_four_outputs_and_the_loss_is_their_sum():
    torch.manual_seed(0)
    model = tiny().eval()
    x = torch.randn(1, 3, 64, 64)
    labels = torch.randint(0, 21, (1, 64, 64))
    labels[:, :5] = 255
    outs = model.msc_forward(x)
    assert [tuple(o.shape[-2:]) for o in outs] == [(9, 9), (7, 7), (5, 5), (9, 9)]  # 1.0, 0.75, 0.5, max
    upsampled = [F.interpolate(o, size=(9, 9), mode="bilinear", align_corners=False) for o in outs[1:3]]
    torch.testing.assert_close(outs[3], torch.stack([outs[0], *upsampled]).max(0).values)

    total, parts = model.msc_loss(x, labels)
    targets = [resize_labels(labels, o.shape[-2:]) for o in outs]
    for target in targets:  # kazuto1011's label resizing (PIL NEAREST), except on exact ties
        h, w = target.shape[-2:]
        tie_rows = ((np.arange(h) + 0.5) * 64 / h) % 1 == 0
        tie_cols = ((np.arange(w) + 0.5) * 64 / w) % 1 == 0
        same = (target == pil_nearest(labels, (h, w))).numpy()
        assert same[:, ~tie_rows][:, :, ~tie_cols].all()
    expected = [F.cross_entropy(o, t, ignore_index=255) for o, t in zip(outs, targets)]
    assert len(parts) == 4
    for part, exp in zip(parts, expected):
        torch.testing.assert_close(part, exp)
    torch.testing.assert_close(total, sum(expected))


class ScaleDependentNet:
    """Constant logits per (input width, mirrored?) view: values[(w, flipped)] is a [C] vector.

    The image's left half is bright, so a mirrored view is recognised by its first column."""

    def __init__(self, values: dict[tuple[int, bool], list[float]]):
        self.values = values

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flipped = bool(x[0, 0, 0, 0] < 0)
        v = torch.tensor(self.values[(x.shape[-1], flipped)])
        return v[None, :, None, None].expand(x.shape[0], -1, 5, 7).clone()


def test_max_fusion_takes_the_pixelwise_max_over_scales_and_flips():
    image = -torch.ones(1, 3, 32, 40)
    image[..., :20] = 1.0  # left half bright
    values = {
        (20, False): [5.0, 0.0, 1.0], (20, True): [0.0, 6.0, 0.0],
        (40, False): [1.0, 2.0, 3.0], (40, True): [2.0, 0.0, 7.0],
        (50, False): [0.0, 1.0, 0.0], (50, True): [-1.0, 0.0, 2.0],
    }  # fmt: skip
    net = ScaleDependentNet(values)
    fused = multi_scale_logits(net, image, scales=(0.5, 1.0, 1.25), flip=True, fuse="max")
    assert fused.shape == (1, 3, 32, 40)
    expected = torch.tensor(values[(20, False)])
    for v in values.values():
        expected = torch.maximum(expected, torch.tensor(v))
    torch.testing.assert_close(fused, expected[None, :, None, None].expand_as(fused))
    assert fused.argmax(1).unique().tolist() == [2]  # class 2 wins thanks to one mirrored view

    no_flip = multi_scale_logits(net, image, scales=(0.5, 1.0, 1.25), flip=False, fuse="max")
    torch.testing.assert_close(no_flip[0, :, 0, 0], torch.tensor([5.0, 2.0, 3.0]))
    mean = multi_scale_logits(net, image, scales=(0.5, 1.0, 1.25), flip=False, fuse="mean")
    torch.testing.assert_close(mean[0, :, 0, 0], torch.tensor([6.0, 3.0, 4.0]) / 3)


def test_optimiser_groups_and_poly_schedule():
    model = tiny(max_steps=10, poly_interval=1)
    groups = model.param_groups()
    assert [g["name"] for g in groups] == ["backbone", "aspp_weight", "aspp_bias"]
    assert [g["lr"] for g in groups] == pytest.approx([2.5e-4, 2.5e-3, 5e-3])
    assert [g["weight_decay"] for g in groups] == [5e-4, 5e-4, 0.0]
    optim = model.configure_optimizers()
    scheduler = optim["lr_scheduler"]["scheduler"]
    for _ in range(5):
        optim["optimizer"].step()
        scheduler.step()
    assert optim["optimizer"].param_groups[0]["lr"] == pytest.approx(2.5e-4 * 0.5**0.9)


def test_default_poly_decays_every_ten_iterations_as_kazuto1011():
    model = tiny(max_steps=40)
    optim = model.configure_optimizers()
    optimizer, scheduler = optim["optimizer"], optim["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(40):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # PolynomialLR(step_size=10) after iterations 10, 20, 30: iterations 11-20 run at (1 - 10/40)^0.9.
    expected = [2.5e-4 * (1 - 10 * (k // 10) / 40) ** 0.9 for k in range(40)]
    assert lrs == pytest.approx(expected)
    assert len(set(lrs)) == 4


def random_batches(n: int = 2, size: int = 32):
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.randn(1, 3, size, size, generator=g),
             "label": torch.randint(0, 21, (1, size, size), generator=g)} for _ in range(n)]


def test_frozen_bn_survives_fit():
    model = tiny(max_steps=2)
    norms = [m for m in model.backbone.modules() if "BatchNorm" in type(m).__name__]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)
    state = model.backbone.state_dict()
    bn_before = {k: v.clone() for k, v in state.items() if re.search(r"bn|downsample\.1", k)}
    conv_before = model.backbone.layer1[0].conv1.weight.detach().clone()
    optimised = {id(p) for g in model.param_groups() for p in g["params"]}
    assert not any(id(p) in optimised for m in norms for p in m.parameters(recurse=False))

    trainer = pl.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, train_dataloaders=DataLoader(random_batches(), batch_size=None))

    after = model.backbone.state_dict()
    for k, v in bn_before.items():
        torch.testing.assert_close(after[k], v, msg=f"{k} changed during fit")
    assert not torch.equal(model.backbone.layer1[0].conv1.weight, conv_before)  # training did happen


def test_class_balanced_weights_follow_median_frequency():
    weights = median_frequency_weights(torch.tensor([100.0, 10.0, 0.0, 50.0]))
    torch.testing.assert_close(weights, torch.tensor([0.5, 5.0, 0.0, 1.0]))


# -- initial weights ----------------------------------------------------------------------------------


def test_torchvision_state_dict_loads_every_tensor(tmp_path, caplog):
    path = tmp_path / "resnet18.pth"
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), path)
    with caplog.at_level("INFO", logger="advcam_pl.models.weights"):
        model = tiny(pretrained=str(path))
    expected = sum(1 for k in model.backbone.state_dict() if not k.endswith("num_batches_tracked"))
    assert model.n_pretrained_loaded == expected >= 100
    assert f"loaded {expected} / {expected}" in caplog.text
    assert model.hparams.input_space == "rgb_imagenet"
    torch.testing.assert_close(model.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    torch.testing.assert_close(model.backbone.bn1.running_var, reference.bn1.running_var)


def test_imagenet_uses_torchvision_weights(monkeypatch):
    reference = torchvision.models.resnet18().state_dict()
    monkeypatch.setattr("advcam_pl.models.weights.imagenet_state_dict", lambda depth: reference)
    model = tiny(pretrained="imagenet")
    assert model.n_pretrained_loaded >= 100
    torch.testing.assert_close(model.backbone.conv1.weight, reference["conv1.weight"])


@pytest.mark.parametrize("content", ["resnet50", "unrelated"])
def test_mismatched_weights_file_raises(tmp_path, content):
    path = tmp_path / "weights.pth"
    if content == "resnet50":  # conv1/bn1 match a ResNet-18 by name and shape, the blocks do not
        torch.save(torchvision.models.resnet50().state_dict(), path)
    else:
        torch.save({"encoder.weight": torch.zeros(3)}, path)
    with pytest.raises(RuntimeError, match=r"loaded \d+ / \d+ backbone tensors"):
        tiny(pretrained=str(path))


def test_caffe_names_of_kazuto1011_map_to_torchvision():
    caffe = {
        "base.layer1.conv1.conv.weight": 1, "base.layer1.conv1.bn.running_mean": 2,
        "base.layer2.block1.reduce.conv.weight": 3, "base.layer2.block1.proj.bn.bias": 4,
        "base.layer5.block3.increase.bn.weight": 5, "base.layer4.block23.conv3x3.conv.weight": 6,
        "base.aspp.stages.c2.bias": 7,
    }  # fmt: skip
    assert caffe_to_torchvision(caffe) == {
        "conv1.weight": 1, "bn1.running_mean": 2, "layer1.0.conv1.weight": 3, "layer1.0.downsample.1.bias": 4,
        "layer4.2.bn3.weight": 5, "layer3.22.conv2.weight": 6, "aspp.convs.2.bias": 7,
    }  # fmt: skip


def kazuto_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ResNet-50+ names → kazuto1011's Caffe-converted ones (the inverse of the loader's map)."""
    parts = {"conv1": "reduce.conv", "bn1": "reduce.bn", "conv2": "conv3x3.conv", "bn2": "conv3x3.bn",
             "conv3": "increase.conv", "bn3": "increase.bn", "downsample.0": "proj.conv", "downsample.1": "proj.bn"}
    out = {}
    for name, tensor in state.items():
        if m := re.match(r"^(conv1|bn1)\.(.+)$", name):
            name = f"layer1.conv1.{'conv' if m[1] == 'conv1' else 'bn'}.{m[2]}"
        elif m := re.match(r"^layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.\d)\.(.+)$", name):
            name = f"layer{int(m[1]) + 1}.block{int(m[2]) + 1}.{parts[m[3]]}.{m[4]}"
        out[f"base.{name}"] = tensor
    return out


def test_caffe_weights_get_bgr_0_255_mean_subtracted_input(tmp_path):
    torch.manual_seed(0)
    source = DeepLabV2(depth=50, pretrained=None, freeze_bn=True)
    path = tmp_path / "caffe_resnet50.pth"
    torch.save(kazuto_names(source.backbone.state_dict()), path)
    model = DeepLabV2(depth=50, pretrained=str(path)).eval()
    assert model.hparams.input_space == "bgr_caffe" and model.n_pretrained_loaded == len(source.backbone.state_dict())
    torch.testing.assert_close(model.backbone.layer2[0].conv1.weight, source.backbone.layer2[0].conv1.weight)

    img = np.random.default_rng(0).integers(0, 256, (33, 41, 3), dtype=np.uint8)
    caffe = torch.from_numpy((img[..., ::-1].astype(np.float32) - np.float32(CAFFE_MEAN_BGR)).transpose(2, 0, 1).copy())
    x = normalize(img)[None]
    torch.testing.assert_close(to_input_space(x, "bgr_caffe")[0], caffe, atol=2e-3, rtol=0)
    with torch.no_grad():
        expected = model.aspp(model.backbone(caffe[None])[-1])
        torch.testing.assert_close(model(x), expected, atol=1e-3, rtol=1e-4)

    # A checkpoint remembers the input space: reloaded without the initial weights, it converts the same way.
    ckpt = tmp_path / "seg.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, ckpt)
    reloaded = load_deeplab(ckpt).eval()
    assert reloaded.hparams.input_space == "bgr_caffe"
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x))


def test_torchvision_weights_keep_normalised_rgb_input():
    x = torch.randn(1, 3, 8, 8)
    assert to_input_space(x, "rgb_imagenet") is x
    assert tiny().hparams.input_space == "rgb_imagenet"
    with pytest.raises(ValueError, match="input_space must be one of"):
        to_input_space(x, "bgr")


def test_caffe_weights_are_refused_where_the_input_is_not_converted(tmp_path):
    from advcam_pl.models.cam_classifier import CAMClassifier

    path = tmp_path / "caffe_resnet50.pth"
    torch.save(kazuto_names(DeepLabV2(depth=50, pretrained=None).backbone.state_dict()), path)
    with pytest.raises(ValueError, match="Caffe-converted weights"):
        CAMClassifier(depth=50, pretrained=path)
