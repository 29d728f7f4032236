"""CAMClassifier: shapes, what is frozen, the optimiser, weight loading and checkpoints."""


import pytest
import pytorch_lightning as pl
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision.models._api import WeightsEnum
from torchvision.ops import FrozenBatchNorm2d

from advcam_pl.models import CAMClassifier
from advcam_pl.models.weights import WeightsUnavailableError

RESNET18_TENSORS = 100  # 20 convs + 20 BNs × (weight, bias, running_mean, running_var)


class FixedBatches(Dataset):
    """``n`` seeded random images with fixed multi-hot labels, as ClassificationDataModule yields them."""

    def __init__(self, n: int = 8, size: int = 64, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, size, size, generator=g)
        self.labels = torch.zeros(n, 20)
        self.labels[torch.arange(n), torch.arange(n) % 20] = 1
        self.labels[torch.arange(n), (3 * torch.arange(n) + 5) % 20] = 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "id": f"img{i}"}


def tiny_trainer(**kwargs) -> pl.Trainer:
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**{**defaults, **kwargs})


def frozen_bn_state(model: CAMClassifier) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": t.clone() for name, m in model.named_modules() if isinstance(m, FrozenBatchNorm2d)
            for key, t in m.state_dict().items()}


@pytest.fixture
def resnet18_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@torch.no_grad()
@pytest.mark.parametrize("size", [(375, 500), (500, 375)])
def test_shapes_at_output_stride_16(size):
    model = CAMClassifier(depth=18, pretrained=None).eval()
    x = torch.randn(2, 3, *size)
    h, w = (24, 32) if size == (375, 500) else (32, 24)
    features, logits, cams = model.features(x), model(x), model.cam(x)
    assert features.shape == (2, 512, h, w)
    assert logits.shape == (2, 20)
    assert cams.shape == (2, 20, h, w)
    # A linear head without bias: the class score is the spatial mean of the raw CAM.
    torch.testing.assert_close(cams.mean(dim=(2, 3)), logits, rtol=1e-4, atol=1e-5)
    assert (cams < 0).any(), "cam() must return raw maps, without ReLU"


def test_stem_frozen_and_stage2_detached_in_training_only():
    model = CAMClassifier(depth=18, pretrained=None)
    assert not any(p.requires_grad for p in model.backbone.conv1.parameters())
    assert all(isinstance(m, FrozenBatchNorm2d) for m in [model.backbone.bn1, model.backbone.layer4[0].bn2])
    x, y = torch.randn(2, 3, 64, 64), torch.eye(20)[:2]

    def grads(detach: bool) -> dict[str, bool]:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.multilabel_soft_margin_loss(model(x, detach_stage2=detach), y).backward()
        layers = ["layer1", "layer2", "layer3", "layer4"]
        has = {n: any(p.grad is not None for p in getattr(model.backbone, n).parameters()) for n in layers}
        return has | {"conv1": model.backbone.conv1.weight.grad is not None,
                      "classifier": model.classifier.weight.grad is not None}

    # IRN's `x = self.stage2(x).detach()`: its stage2 is layer2.
    assert grads(True) == {"conv1": False, "layer1": False, "layer2": False, "layer3": True, "layer4": True,
                           "classifier": True}
    assert grads(False) == {"conv1": False, "layer1": True, "layer2": True, "layer3": True, "layer4": True,
                            "classifier": True}
    # CAMs (and AdvCAM's climbing) need the gradient all the way to the image.
    image = x.clone().requires_grad_(True)
    model.cam(image)[:, 0].sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_frozen_bn_survives_fit():
    torch.manual_seed(0)
    model = CAMClassifier(depth=18, pretrained=None)
    bn_before = frozen_bn_state(model)
    conv1_before = model.backbone.conv1.weight.clone()
    classifier_before = model.classifier.weight.clone()
    loader = DataLoader(FixedBatches(n=4, size=32), batch_size=2)
    tiny_trainer(fast_dev_run=1).fit(model, loader, loader)
    model.train()
    for name, tensor in frozen_bn_state(model).items():
        torch.testing.assert_close(tensor, bn_before[name], rtol=0, atol=0, msg=name)
    torch.testing.assert_close(model.backbone.conv1.weight, conv1_before, rtol=0, atol=0)
    assert not torch.equal(model.classifier.weight, classifier_before), "the fit step did not update"


class RecordLR(pl.Callback):
    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append([g["lr"] for g in trainer.optimizers[0].param_groups])


def test_loss_drops_with_poly_decayed_sgd():
    pl.seed_everything(0, verbose=False)
    model = CAMClassifier(depth=18, pretrained=None)
    data = FixedBatches(n=8, size=32)
    batch = {"image": data.images, "label": data.labels}

    @torch.no_grad()
    def loss() -> float:
        return torch.nn.functional.multilabel_soft_margin_loss(model(batch["image"]), batch["label"]).item()

    before = loss()
    lr = RecordLR()
    steps = 30
    tiny_trainer(max_steps=steps, callbacks=[lr], limit_val_batches=0).fit(
        model, DataLoader(data, batch_size=8, shuffle=False))
    after = loss()
    assert after < 0.5 * before, (before, after)

    optimizer = model.trainer.optimizers[0]
    assert [g["momentum"] for g in optimizer.param_groups] == [1e-4, 1e-4]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [1e-4, 1e-4]
    assert optimizer.param_groups[1]["params"] == [model.classifier.weight]
    assert len(lr.lrs) == steps
    for t, (backbone_lr, classifier_lr) in enumerate(lr.lrs):
        poly = (1 - t / steps) ** 0.9
        assert backbone_lr == pytest.approx(0.1 * poly) and classifier_lr == pytest.approx(1.0 * poly)


def test_pretrained_file_loads_every_backbone_tensor(resnet18_file):
    model = CAMClassifier(depth=18, pretrained=resnet18_file)
    assert model.num_loaded_tensors == RESNET18_TENSORS
    source = torch.load(resnet18_file)
    torch.testing.assert_close(model.backbone.layer3[1].conv2.weight, source["layer3.1.conv2.weight"])
    torch.testing.assert_close(model.backbone.layer2[0].downsample[1].running_var,
                               source["layer2.0.downsample.1.running_var"])
    assert CAMClassifier(depth=18, pretrained=None).num_loaded_tensors == 0


def test_pretrained_file_that_matches_nothing_raises(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    with pytest.raises(RuntimeError, match="no tensor matched"):
        CAMClassifier(depth=18, pretrained=path)
    with pytest.raises(FileNotFoundError):
        CAMClassifier(depth=18, pretrained=tmp_path / "missing.pth")


def test_imagenet_offline_says_how_to_supply_a_file(offline):
    with pytest.raises(WeightsUnavailableError, match="ResNet-18") as err:
        CAMClassifier(depth=18, pretrained="imagenet")
    message = str(err.value)
    assert "pretrained=/path/to/resnet18.pth" in message and "TORCH_HOME" in message


def test_checkpoint_loads_without_args_and_without_fetching(tmp_path, monkeypatch, resnet18_file):
    imagenet = torch.load(resnet18_file)
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, *a, **k: imagenet)
    model = CAMClassifier(depth=18, pretrained="imagenet", lr=0.05)
    assert model.num_loaded_tensors == RESNET18_TENSORS
    loader = DataLoader(FixedBatches(n=2, size=32), batch_size=2)
    trainer = tiny_trainer(fast_dev_run=1)
    trainer.fit(model, loader)
    path = tmp_path / "cam.ckpt"
    trainer.save_checkpoint(path, weights_only=True)

    def no_network(self, *args, **kwargs):
        raise AssertionError("load_from_checkpoint fetched ImageNet weights")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", no_network)
    loaded = CAMClassifier.load_from_checkpoint(path, map_location="cpu")
    assert loaded.hparams.pretrained is None and loaded.hparams.lr == 0.05 and loaded.hparams.depth == 18
    assert model.hparams.pretrained == "imagenet"
    assert torch.load(path, weights_only=False)["initial_weights"] == "imagenet"
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_val_map_averages_over_the_classes_present(monkeypatch):
    model = CAMClassifier(depth=18, pretrained=None)
    data = FixedBatches(n=4)  # classes 0-3 and 5, 8, 11, 14 present; the other 12 absent
    logged = {}
    monkeypatch.setattr(model, "log", lambda name, value, **kwargs: logged.__setitem__(name, float(value)))
    monkeypatch.setattr(model, "forward", lambda x: 8 * data.labels[: len(x)] - 4)  # a perfect ranking
    model.validation_step({"image": data.images, "label": data.labels}, 0)
    model.on_validation_epoch_end()
    assert logged["val/mAP"] == pytest.approx(1.0)


def test_norm_batch_is_for_training_from_scratch():
    model = CAMClassifier(depth=18, pretrained=None, norm="batch")
    assert isinstance(model.backbone.layer3[0].bn1, torch.nn.BatchNorm2d)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    with pytest.raises(ValueError, match="norm must be one of"):
        CAMClassifier(depth=18, pretrained=None, norm="group")
