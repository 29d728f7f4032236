"""Stage make_cam from a composed config: CAM files for the infer list, resume, analysis JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from advcam_pl.advcam import load_cam
from advcam_pl.data.voc import VOCReader
from advcam_pl.errors import ArchitectureMismatchError, NonFiniteError, StaleOutputsError
from advcam_pl.models.cam_classifier import CAMClassifier
from advcam_pl.pipeline import make_cam

CLIMB = ("cam.climb.steps=2", "cam.scales=[1.0,0.5]")


OVERRIDES = ("data=synthetic", "data.infer_list=train", "classifier=resnet18", "trainer=cpu",
             "+trainer.enable_progress_bar=false", "logger=none")


@pytest.fixture
def checkpoint(random_cam_checkpoint):
    return random_cam_checkpoint


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


# -- issue 14: what counts as done, and inputs that are wrong but would not crash ----------------------


def test_make_cam_refuses_other_settings_or_a_newer_classifier_and_redoes_truncated_files(
        compose_cfg, synthetic_root, tmp_path, checkpoint):
    ckpt = tmp_path / "cam_classifier.ckpt"
    ckpt.write_bytes(checkpoint.read_bytes())
    base = (*OVERRIDES, f"data.root={synthetic_root}", f"artifacts.cam_ckpt={ckpt}", "cam=cam", "cam.scales=[1.0]")
    cfg = compose_cfg(*base)
    make_cam.run(cfg)
    cam_dir = tmp_path / "cam"
    first = sorted(cam_dir.glob("*.npz"))[0]
    whole = load_cam(first)
    first.write_bytes(first.read_bytes()[:100])  # cut short (disk full, a copy interrupted)
    assert not make_cam.is_done(cfg)
    assert make_cam.run(cfg)["written"] == 1
    np.testing.assert_array_equal(load_cam(first)["high_res"], whole["high_res"])
    assert make_cam.is_done(cfg)

    changed = compose_cfg(*base[:-1], "cam.scales=[1.0,0.5]")
    assert not make_cam.is_done(changed)
    with pytest.raises(StaleOutputsError, match=r"cam\.scales: \[1\.0\] then, \[1\.0, 0\.5\] now"):
        make_cam.run(changed)

    torch.save({**torch.load(ckpt, weights_only=True), "epoch": 1}, ckpt)  # train_cam ran again
    assert not make_cam.is_done(cfg)
    with pytest.raises(StaleOutputsError, match=r"input cam_ckpt: changed since \(sha256:"):
        make_cam.run(cfg)
    assert make_cam.run(compose_cfg(*base, "overwrite=true"))["written"] == len(VOCReader(synthetic_root, "train").ids)


def test_make_cam_names_a_checkpoint_of_another_network_or_a_diverged_one(compose_cfg, synthetic_root, tmp_path):
    model = CAMClassifier(depth=34, pretrained=None)
    other = tmp_path / "resnet34.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, other)
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", f"artifacts.cam_ckpt={other}", "cam=cam")
    with pytest.raises(ArchitectureMismatchError, match=r"depth=34 in the checkpoint, classifier\.module\.depth=18"):
        make_cam.run(cfg)  # classifier=resnet18 no longer silently runs the checkpoint's ResNet-34

    model = CAMClassifier(depth=18, pretrained=None, norm="batch")
    with torch.no_grad():
        model.backbone.layer4[0].conv1.weight.fill_(float("nan"))  # a diverged training
    diverged = tmp_path / "diverged.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, diverged)
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", f"artifacts.cam_ckpt={diverged}", "cam=cam")
    with pytest.raises(NonFiniteError, match=r"diverged\.ckpt: 1 tensors hold NaN .*backbone\.layer4\.0\.conv1"):
        make_cam.run(cfg)
    assert not list((tmp_path / "cam").glob("*.npz"))


def test_make_cam_records_skipped_unreadable_images_for_the_later_stages(compose_cfg, synthetic_root, tmp_path,
                                                                          checkpoint):
    import shutil

    from advcam_pl.pipeline import make_ir_label, run_stage
    from advcam_pl.pipeline.skipped import read_skipped

    root = tmp_path / "VOC2012"
    shutil.copytree(synthetic_root, root)
    ids = VOCReader(root, "train").ids
    (root / "JPEGImages" / f"{ids[1]}.jpg").write_bytes(b"not a jpeg")
    cfg = compose_cfg(*OVERRIDES, f"data.root={root}", f"artifacts.cam_ckpt={checkpoint}", "cam=cam",
                      "cam.scales=[1.0]", "data.skip_bad=true", "irn=resnet18", "irn.num_workers=0")
    metrics = make_cam.run(cfg)
    assert metrics["skipped_ids"] == [ids[1]] and metrics["num_cam_files"] == len(ids) - 1
    assert list(read_skipped(cfg.artifacts.cam_dir)) == [ids[1]] and "cannot" in read_skipped(cfg.artifacts.cam_dir)[ids[1]]
    assert make_cam.is_done(cfg)
    labels = run_stage("make_ir_label", cfg)  # no longer demands the skipped image's CAM file
    assert labels["skipped_ids"] == [ids[1]] and make_ir_label.is_done(cfg)
