"""A second architecture through the unchanged stages: torchvision's MobileNetV2 (classifier=mobilenet_v2)
trained by train_cam, CAM and AdvCAM by make_cam (through the adapter), scored by eval_cam.

Two tiny epochs leave every class map of this network negative (early multi-label training scores every
class low), so the maps' content is not checked here; fast == reference on a stride-16 MobileNetV2 is
tests/advcam/test_adapters.py, the trained demo classifier's seed mIoU is in the README."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from advcam_pl.advcam import load_cam
from advcam_pl.data.voc import VOCReader
from advcam_pl.errors import ArchitectureMismatchError
from advcam_pl.models.torchvision_cam import TorchvisionCAMClassifier
from advcam_pl.pipeline import eval_cam, make_cam, train_cam

OVERRIDES = ("data=synthetic", "classifier=mobilenet_v2", "classifier.module.pretrained=null",
             "classifier.module.norm=batch", "classifier.train.max_epochs=2", "classifier.train.crop_size=32",
             # small batches: 24 steps bring BatchNorm's running statistics near the data's (from 1 at init,
             # which collapses a from-scratch MobileNetV2's eval-mode activations to ~0)
             "classifier.train.resize_long=[32,48]", "classifier.train.batch_size=2", "cam.scales=[1.0,0.5]",
             "logger=none", "trainer=cpu", "+trainer.enable_progress_bar=false")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_root):
    """``(compose, checkpoint)``: one train_cam run of the tiny MobileNetV2, shared by the tests."""
    from advcam_pl.config import compose_config

    work = tmp_path_factory.mktemp("mobilenet_v2")

    def compose(*overrides: str, work_dir=work):
        return compose_config([f"paths.output_dir={work_dir}", f"paths.work_dir={work_dir}", *OVERRIDES,
                               f"data.root={synthetic_root}", *overrides])

    cfg = compose("cam=cam")
    metrics = train_cam.run(cfg)
    assert math.isfinite(metrics["train_loss"]) and 0 < metrics["val_map"] <= 1
    assert train_cam.is_done(cfg)
    return compose, cfg.artifacts.cam_ckpt


def test_train_cam_writes_a_mobilenet_v2_checkpoint(trained):
    _, ckpt = trained
    checkpoint = torch.load(ckpt, weights_only=True)
    assert checkpoint["hyper_parameters"]["arch"] == "mobilenet_v2"
    assert checkpoint["hyper_parameters"]["pretrained"] is None and checkpoint["initial_weights"] is None
    assert any(k.startswith("network.features.18") for k in checkpoint["state_dict"])  # torchvision's names
    model = TorchvisionCAMClassifier.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    assert model.hparams.output_stride == 16


@pytest.mark.parametrize("cam", ["cam", "advcam"])
def test_make_cam_and_eval_cam_run_unchanged_on_it(trained, cam, synthetic_root):
    compose, ckpt = trained
    cfg = compose(f"cam={cam}", *(["cam.climb.steps=2"] if cam == "advcam" else []))
    ids = VOCReader(synthetic_root, cfg.data.infer_list).ids
    metrics = make_cam.run(cfg)
    assert metrics["num_cam_files"] == len(ids) and make_cam.is_done(cfg)
    reader = VOCReader(synthetic_root, "train")
    labelled = [i for i in reader.ids if reader.labels(i).any()]
    for image_id in labelled:
        maps = load_cam(make_cam_path(cfg, image_id))
        assert list(maps["keys"]) == list(np.flatnonzero(reader.labels(image_id)))
        assert maps["high_res"].shape[1:] == reader.load_image(image_id).shape[:2]
        assert np.isfinite(maps["high_res"]).all() and 0 <= maps["high_res"].min() <= maps["high_res"].max() <= 1

    scores = eval_cam.run(cfg)
    assert scores["cam"] == cam and 0 < scores["seed_miou"] <= 1 and eval_cam.is_done(cfg)


def make_cam_path(cfg, image_id):
    from advcam_pl.advcam.cam_io import cam_path

    return cam_path(cfg.artifacts.cam_dir, image_id)


def test_its_checkpoint_under_the_resnet_config_is_named(trained, tmp_path):
    compose, ckpt = trained
    cfg = compose("cam=cam", "classifier=resnet18", f"artifacts.cam_ckpt={ckpt}", work_dir=tmp_path)
    with pytest.raises(ArchitectureMismatchError, match="another network class than the configured CAMClassifier"):
        make_cam.run(cfg)


