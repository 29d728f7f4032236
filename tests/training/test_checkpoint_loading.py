"""Checkpoints and weight files are read as data only, checked against the configured network, and
errors name the file (issue 14 items 4, 6, 7 and 10)."""

import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from advcam_pl.errors import ArchitectureMismatchError, CorruptFileError, NonFiniteError, UntrustedFileError
from advcam_pl.models.cam_classifier import CAMClassifier
from advcam_pl.models.irn import IRN
from advcam_pl.models.resnet import ResNet
from advcam_pl.models.weights import load_backbone_weights
from advcam_pl.training.checkpoint import load_checkpoint_file, load_trained


class Payload:
    """Unpickling this runs ``os.mkdir(marker)``: any code could run instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def lightning_checkpoint(model: pl.LightningModule, path: Path, **extra) -> Path:
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__, **extra}, path)
    return path


@pytest.fixture(scope="module")
def resnet50_classifier(tmp_path_factory) -> Path:
    """A (random) ResNet-50 CAM classifier checkpoint, as train_cam with classifier=resnet50 writes."""
    torch.manual_seed(0)
    return lightning_checkpoint(CAMClassifier(depth=50, pretrained=None),
                                tmp_path_factory.mktemp("r50") / "cam_classifier.ckpt")


@pytest.fixture(scope="module")
def resnet18_classifier(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return lightning_checkpoint(CAMClassifier(depth=18, pretrained=None, norm="batch"),
                                tmp_path_factory.mktemp("r18") / "cam_classifier.ckpt")


def test_files_with_a_code_payload_are_refused_everywhere(tmp_path, resnet18_classifier, compose_cfg):
    marker = tmp_path / "payload_ran"
    good = torch.load(resnet18_classifier, weights_only=True)
    evil_ckpt = tmp_path / "evil.ckpt"
    torch.save({**good, "hyper_parameters": {**good["hyper_parameters"], "x": Payload(marker)}}, evil_ckpt)
    evil_pth = tmp_path / "resnet18.pth"
    torch.save({**ResNet(18).state_dict(), "x": Payload(marker)}, evil_pth)

    # *.pretrained=<file.pth>, the README's offline route
    with pytest.raises(UntrustedFileError, match=r"resnet18\.pth holds Python objects besides weights"):
        CAMClassifier(depth=18, pretrained=evil_pth)
    # train_irn with irn.init_from_cam reads the CAM classifier checkpoint
    with pytest.raises(UntrustedFileError, match=r"evil\.ckpt"):
        IRN(depth=18, pretrained=None, dp_width=64).init_backbone(str(evil_ckpt))
    # make_sem_seg reads the IRN checkpoint, eval_seg / eval_semi theirs, make_cam the classifier
    from advcam_pl.models.deeplab_v2 import load_deeplab
    from advcam_pl.pipeline.make_sem_seg import load_irn

    cfg = compose_cfg("irn=resnet18", f"artifacts.irn_ckpt={evil_ckpt}")
    with pytest.raises(UntrustedFileError, match="IRN checkpoint .*evil.ckpt"):
        load_irn(cfg)
    with pytest.raises(UntrustedFileError, match="segmentation checkpoint .*evil.ckpt"):
        load_deeplab(evil_ckpt)
    from advcam_pl.models.cct import load_cct

    with pytest.raises(UntrustedFileError, match="CCT checkpoint .*evil.ckpt"):
        load_cct(evil_ckpt)
    with pytest.raises(UntrustedFileError, match="CAM classifier"):
        load_trained(CAMClassifier, evil_ckpt, what="CAM classifier checkpoint", remedy="run train_cam")
    assert not marker.exists(), "the payload ran"


def test_truncated_checkpoint_is_an_error_naming_it(tmp_path, resnet18_classifier):
    cut = tmp_path / "cam_classifier.ckpt"
    cut.write_bytes(resnet18_classifier.read_bytes()[:4096])  # the 4 KiB file of the issue
    with pytest.raises(CorruptFileError, match=rf"CAM classifier checkpoint {cut} is truncated.*run train_cam"):
        load_checkpoint_file(cut, "CAM classifier checkpoint", "run train_cam")
    with pytest.raises(FileNotFoundError, match="run train_cam"):
        load_checkpoint_file(tmp_path / "none.ckpt", "CAM classifier checkpoint", "run train_cam")


def test_a_checkpoint_of_another_architecture_is_an_error_naming_both(resnet50_classifier):
    with pytest.raises(ArchitectureMismatchError,
                       match=r"depth=50 in the checkpoint, classifier\.module\.depth=18 configured"):
        load_trained(CAMClassifier, resnet50_classifier, what="CAM classifier checkpoint", remedy="",
                     expected={"depth": 18, "num_classes": 20}, configured_by="classifier.module")
    # IRN initialised from it (irn=resnet18, init_from_cam): named, not 77 of 100 tensors
    with pytest.raises(ArchitectureMismatchError, match=r"holds a ResNet-50 backbone .* configured as ResNet-18"):
        IRN(depth=18, pretrained=None, dp_width=64).init_backbone(str(resnet50_classifier))


def test_a_partial_initialisation_needs_the_switch_and_then_warns_with_the_count(tmp_path):
    state = {k: v for k, v in ResNet(18).state_dict().items() if not k.startswith("layer4.")}
    path = tmp_path / "no_layer4.pth"
    torch.save(state, path)
    with pytest.raises(RuntimeError, match=r"IRN: loaded 75 / 100 backbone tensors .*allow_partial_init=true"):
        IRN(depth=18, pretrained=None, dp_width=64).init_backbone(str(path))
    with pytest.warns(UserWarning, match=r"loaded 75 / 100 backbone tensors .*PARTIAL initialisation \(25 backbone"):
        assert IRN(depth=18, pretrained=None, dp_width=64, allow_partial_init=True).init_backbone(str(path)) == 75
    unrelated = tmp_path / "unrelated.pth"
    torch.save({"head.weight": torch.zeros(3)}, unrelated)
    with pytest.raises(RuntimeError, match="no tensor matched"):  # nothing at all is never allowed
        load_backbone_weights(ResNet(18), str(unrelated), 18, allow_partial=True)


def test_non_finite_weights_are_an_error_naming_the_file_and_tensor(tmp_path):
    model = CAMClassifier(depth=18, pretrained=None, norm="batch")
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    path = lightning_checkpoint(model, tmp_path / "diverged.ckpt")
    with pytest.raises(NonFiniteError, match=r"diverged\.ckpt: 1 tensors hold NaN .*classifier\.weight"):
        load_trained(CAMClassifier, path, what="CAM classifier checkpoint", remedy="")


def test_our_checkpoints_load_as_data(resnet18_classifier):
    model = load_trained(CAMClassifier, resnet18_classifier, what="CAM classifier checkpoint", remedy="",
                         expected={"depth": 18}, configured_by="classifier.module", pretrained=None)
    assert model.hparams.depth == 18
    assert torch.equal(model.classifier.weight, torch.load(resnet18_classifier, weights_only=True)
                       ["state_dict"]["classifier.weight"])
