"""Stage make_cam from a composed config: CAM files for the infer list, resume, analysis JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from advcam_pl.advcam import load_cam
from advcam_pl.data.voc import VOCReader
from advcam_pl.models.cam_classifier import CAMClassifier
from advcam_pl.pipeline import make_cam

CLIMB = ("cam.climb.steps=2", "cam.scales=[1.0,0.5]")


OVERRIDES = ("data=synthetic", "data.infer_list=train", "classifier=resnet18", "trainer=cpu",
             "+trainer.enable_progress_bar=false", "logger=none")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random ResNet-18 CAMClassifier saved as a Lightning checkpoint."""
    torch.manual_seed(0)
    model = CAMClassifier(depth=18, pretrained=None)
    path = tmp_path_factory.mktemp("ckpt") / "cam_classifier.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, path)
    return path


def test_make_cam_writes_every_image_and_resumes(compose_cfg, synthetic_root, tmp_path, checkpoint):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", f"artifacts.cam_ckpt={checkpoint}", *CLIMB)
    ids = VOCReader(synthetic_root, "train").ids
    assert not make_cam.is_done(cfg)
    metrics = make_cam.run(cfg)
    assert metrics["written"] == metrics["num_images"] == len(ids) and "objective" in metrics
    assert make_cam.is_done(cfg)
    cam = load_cam(tmp_path / "advcam" / f"{ids[0]}.npz")
    assert cam["high_res"].shape[1:] == VOCReader(synthetic_root, "train").load_image(ids[0]).shape[:2]

    (tmp_path / "advcam" / f"{ids[1]}.npz").unlink()
    mtime = (tmp_path / "advcam" / f"{ids[0]}.npz").stat().st_mtime_ns
    assert make_cam.run(cfg)["written"] == 1
    assert (tmp_path / "advcam" / f"{ids[0]}.npz").stat().st_mtime_ns == mtime


def test_make_cam_analysis_writes_the_curves(compose_cfg, synthetic_root, tmp_path, checkpoint):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", f"artifacts.cam_ckpt={checkpoint}",
                      "cam=advcam_noreg", "cam.analysis=true", "cam.climb.steps=3", "cam.scales=[1.0]")
    metrics = make_cam.run(cfg)
    assert make_cam.is_done(cfg)
    curves = json.loads((tmp_path / "advcam_noreg_analysis.json").read_text())
    assert curves["num_images"] == curves["num_images_with_mask"] == len(VOCReader(synthetic_root, "train").ids)
    assert len(curves["seed_miou"]) == 3 and curves["noise_proportion"][0] is None
    assert np.isfinite(curves["amplification_discriminative"]).all()
    assert metrics["analysis_seed_miou_final"] == curves["seed_miou"][-1]


def test_plain_cam_config(compose_cfg, synthetic_root, tmp_path, checkpoint):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", f"artifacts.cam_ckpt={checkpoint}", "cam=cam",
                      "cam.scales=[1.0,0.5]")
    assert make_cam.climb_options(compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", *CLIMB).cam).steps == 2
    make_cam.run(cfg)
    assert make_cam.is_done(cfg)
    assert cfg.artifacts.cam_dir.endswith("/cam")
