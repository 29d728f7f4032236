"""TorchvisionCAMClassifier: torchvision's MobileNetV2 as a CAM classifier through the adapter."""


import pytest
import pytorch_lightning as pl
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader
from torchvision.ops import FrozenBatchNorm2d

from advcam_pl.errors import ArchitectureMismatchError
from advcam_pl.models import CAMClassifier
from advcam_pl.models.torchvision_cam import TorchvisionCAMClassifier
from advcam_pl.models.weights import WeightsUnavailableError
from advcam_pl.pipeline.make_cam import load_classifier

# MobileNetV2: 52 convs + 52 BNs × (weight, bias, running_mean, running_var); the head Linear is not loaded.
MOBILENET_V2_TENSORS = 52 + 52 * 4


def calibrated(model: TorchvisionCAMClassifier) -> TorchvisionCAMClassifier:
    """Trainable BN with the statistics of one random batch (a random init's unit running
    variance shrinks MobileNetV2's activations to ~1e-9), then eval mode."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        model.train()(torch.randn((8, 3, 64, 64), generator=torch.Generator().manual_seed(3)))
    return model.eval()


@torch.no_grad()
@pytest.mark.parametrize("output_stride,grid", [(16, (4, 6)), (32, (2, 3))])
def test_the_torchvision_network_seen_through_the_adapter(output_stride, grid):
    torch.manual_seed(0)
    model = calibrated(TorchvisionCAMClassifier(pretrained=None, norm="batch", output_stride=output_stride))
    head = model.network.classifier[1]
    assert model.classifier.weight.shape == (20, 1280, 1, 1)
    assert model.classifier.weight.data_ptr() == head.weight.data_ptr()  # a view: training trains the Linear
    x = torch.randn(2, 3, 64, 96)
    cams, logits = model.cam(x), model(x)
    assert model.features(x).shape == (2, 1280, *grid) and cams.shape == (2, 20, *grid)
    # a linear head: the logits are the spatial mean of the raw maps plus the Linear's bias
    torch.testing.assert_close(cams.mean(dim=(2, 3)) + head.bias, logits, rtol=1e-4, atol=1e-5)
    if output_stride == 32:  # the network as torchvision built it
        torch.testing.assert_close(logits, model.network(x), rtol=1e-4, atol=1e-5)
    else:  # the stride-16 features pool a finer map than torchvision's forward
        assert (logits - model.network(x)).abs().max() > 1e-3 * logits.abs().max()


def test_parameter_groups_split_the_head_from_the_rest_and_training_reaches_the_network():
    torch.manual_seed(0)
    model = TorchvisionCAMClassifier(pretrained=None, norm="batch", lr=0.05)
    backbone, head = model.parameter_groups()
    assert [id(p) for p in head] == [id(p) for p in model.network.classifier[1].parameters()]
    assert {id(p) for p in backbone} | {id(p) for p in head} == {id(p) for p in model.network.parameters()}
    assert not {id(p) for p in backbone} & {id(p) for p in head}
    before = model.network.features[17].conv[1][0].weight.clone()
    images = torch.randn(4, 3, 64, 64)
    labels = torch.zeros(4, 20)
    labels[:, 3] = 1
    data = DataLoader([{"image": images, "label": labels}] * 2, batch_size=None)  # two batches of 4
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, train_dataloaders=data)
    assert not torch.equal(model.network.features[17].conv[1][0].weight, before)  # a dilated conv of stride 16
    assert model.optimizers().param_groups[1]["lr"] > model.optimizers().param_groups[0]["lr"]


def test_frozen_norm_keeps_each_layers_eps():
    model = TorchvisionCAMClassifier(arch="efficientnet_v2_s", pretrained=None, norm="frozen")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert {m.eps for m in model.modules() if isinstance(m, FrozenBatchNorm2d)} == {1e-3}  # EfficientNetV2 builds its BN with eps 1e-3


def test_a_torchvision_file_fills_everything_but_the_head(tmp_path):
    torch.manual_seed(1)
    imagenet_like = torchvision.models.mobilenet_v2()  # 1000 classes
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(imagenet_like.state_dict(), path)
    model = TorchvisionCAMClassifier(pretrained=path)
    assert model.num_loaded_tensors == MOBILENET_V2_TENSORS
    assert torch.equal(model.network.features[3].conv[0][0].weight, imagenet_like.features[3].conv[0][0].weight)
    assert isinstance(model.network.features[3].conv[0][1], FrozenBatchNorm2d)

    partial = {k: v for k, v in imagenet_like.state_dict().items() if not k.startswith("features.18")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(RuntimeError, match=r"loaded 255 / 260 backbone tensors .* do not fit torchvision's "
                                           r"mobilenet_v2"):
        TorchvisionCAMClassifier(pretrained=tmp_path / "partial.pth")


def test_a_resnet_checkpoint_is_not_mobilenet_weights(tmp_path):
    resnet = CAMClassifier(depth=18, pretrained=None)
    path = tmp_path / "resnet.ckpt"
    torch.save({"state_dict": resnet.state_dict(), "hyper_parameters": dict(resnet.hparams)}, path)
    with pytest.raises(ArchitectureMismatchError, match="holds a resnet18 network but this one is configured as "
                                                        "mobilenet_v2"):
        TorchvisionCAMClassifier(pretrained=path)


def test_imagenet_offline_says_how_to_supply_a_file(offline):
    with pytest.raises(WeightsUnavailableError, match=r"ImageNet weights for mobilenet_v2 .*mobilenet_v2-b0353104"
                                                      r"\.pth into .*pretrained=/path/to/mobilenet_v2\.pth.*"
                                                      r"pretrained=null"):
        TorchvisionCAMClassifier(pretrained="imagenet")


def test_heads_without_a_cam_are_refused():
    with pytest.raises(TypeError, match="CAM is undefined for ConvNeXt"):
        TorchvisionCAMClassifier(arch="convnext_tiny", pretrained=None, output_stride=32)
    with pytest.raises(ValueError, match="arch='no_such_net': not a torchvision classifier"):
        TorchvisionCAMClassifier(arch="no_such_net", pretrained=None)


def test_checkpoint_round_trip_and_class_mismatch(tmp_path, offline):
    torch.manual_seed(0)
    model = TorchvisionCAMClassifier(pretrained=None, norm="batch")
    path = tmp_path / "cam_classifier.ckpt"
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": {**model.hparams, "pretrained": "imagenet"},
                  "pytorch-lightning_version": pl.__version__}
    model.on_save_checkpoint(checkpoint)  # records pretrained=None: loading must not fetch (offline here)
    torch.save(checkpoint, path)
    loaded = load_classifier(path, {"arch": "mobilenet_v2", "output_stride": 16, "num_classes": 20},
                             TorchvisionCAMClassifier).eval()
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.cam(x), model.eval().cam(x))
    with pytest.raises(ArchitectureMismatchError, match=r"output_stride=16 in the checkpoint, "
                                                        r"classifier\.module\.output_stride=32"):
        load_classifier(path, {"arch": "mobilenet_v2", "output_stride": 32}, TorchvisionCAMClassifier)
    with pytest.raises(ArchitectureMismatchError, match=r"another network class than the configured CAMClassifier "
                                                        r"\(its hyper-parameters arch='mobilenet_v2'"):
        load_classifier(path, {"depth": 18})


def test_its_checkpoint_is_no_resnet_backbone_for_init_from_cam(tmp_path):
    from advcam_pl.models.resnet import ResNet
    from advcam_pl.models.weights import load_backbone_weights

    model = TorchvisionCAMClassifier(pretrained=None, norm="batch")
    path = tmp_path / "cam_classifier.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    with pytest.raises(ArchitectureMismatchError, match=r"holds a mobilenet_v2 classifier .*not a ResNet-18 "
                                                        r"backbone.*irn\.init_from_cam=false"):
        load_backbone_weights(ResNet(18), path, 18, "IRN")
