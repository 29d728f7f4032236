"""`auto` refinement settings in the stages (pipeline/resolve_auto.py) and the segmentation
network's backbone from the CAM classifier (model.init_from_cam)."""

import json
from pathlib import Path

import pytest
import torch
from tests.pipeline.test_refine_stages import OVERRIDES, fake_cam_checkpoint, fake_cams

from advcam_pl.errors import StaleOutputsError
from advcam_pl.pipeline import make_ir_label, make_sem_seg, resolve_auto, run_stage, train_seg
from advcam_pl.refine import auto_settings as rules

AUTO = ("irn.ir_label.fg_threshold=auto", "irn.ir_label.bg_threshold=auto", "irn.random_walk.sem_seg_bg_threshold=auto",
        "irn.random_walk.exp_times=auto", "irn.module.radius=auto")


def write_best_threshold(cfg, value):
    Path(cfg.artifacts.cam_metrics).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.artifacts.cam_metrics).write_text(json.dumps({"best_threshold": value, "seed_miou": 0.5}))


def test_auto_thresholds_come_from_the_seed_evaluation(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", *AUTO)
    with pytest.raises(FileNotFoundError, match=r"eval_advcam\.json: run eval_cam first"):
        resolve_auto.ir_label_thresholds(cfg)
    with pytest.raises(FileNotFoundError, match="run eval_cam first"):
        resolve_auto.random_walk_settings(cfg)
    write_best_threshold(cfg, 0.41)
    assert resolve_auto.ir_label_thresholds(cfg) == pytest.approx(rules.ir_label_thresholds(0.41))
    assert resolve_auto.random_walk_settings(cfg)["bg_threshold"] == pytest.approx(rules.walk_background(0.41))
    Path(cfg.artifacts.cam_metrics).write_text(json.dumps({"seed_miou": 0.5}))
    with pytest.raises(ValueError, match="no `best_threshold`"):
        resolve_auto.ir_label_thresholds(cfg)


def test_numbers_are_used_as_they_are(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", "irn.ir_label.bg_threshold=auto")
    write_best_threshold(cfg, 0.41)
    fg, bg = resolve_auto.ir_label_thresholds(cfg)  # only bg is auto
    assert fg == 0.35 and bg == pytest.approx(0.41)
    settings = resolve_auto.random_walk_settings(cfg)
    assert settings["bg_threshold"] == 0.25 and settings["exp_times"] == 5
    assert resolve_auto.irn_radius(cfg) == 5
    # The VOC defaults need no seed evaluation at all.
    default = compose_cfg(f"data.root={synthetic_root}", "data=synthetic")
    assert resolve_auto.ir_label_thresholds(default) == (0.35, 0.15)
    assert resolve_auto.random_walk_settings(default)["bg_threshold"] == 0.25
    assert resolve_auto.irn_radius(default) == 10 and resolve_auto.random_walk_settings(default)["exp_times"] == 8


def test_auto_walk_length_and_radius_follow_the_images(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", *AUTO)
    write_best_threshold(cfg, 0.3)
    grid = resolve_auto.dataset_grid(cfg)  # 48-64 px long sides: at most 16 cells
    assert 8 <= min(grid) and max(grid) <= 16
    assert resolve_auto.irn_radius(cfg) == rules.irn_radius(grid) == rules.MIN_IRN_RADIUS
    assert resolve_auto.random_walk_settings(cfg)["exp_times"] == rules.walk_exp_times(grid) == 2


def test_stages_use_and_record_the_resolved_values(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", *AUTO, "data.train_list=train", "data.infer_list=train")
    fake_cams(cfg, synthetic_root)
    fake_cam_checkpoint(cfg)
    with pytest.raises(FileNotFoundError, match="run eval_cam first"):
        run_stage("make_ir_label", cfg)
    best = run_stage("eval_cam", cfg)["best_threshold"]
    fg, bg = rules.ir_label_thresholds(best)
    metrics = run_stage("make_ir_label", cfg)
    assert (metrics["fg_threshold"], metrics["bg_threshold"]) == pytest.approx((fg, bg))
    run_stage("train_irn", cfg)
    ckpt = torch.load(cfg.artifacts.irn_ckpt, map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["radius"] == rules.MIN_IRN_RADIUS
    metrics = run_stage("make_sem_seg", cfg)
    assert metrics["exp_times"] == 2 and metrics["bg_threshold"] == pytest.approx(rules.walk_background(best))
    assert make_ir_label.is_done(cfg) and make_sem_seg.is_done(cfg)

    # Labels and masks record the values, not `auto`: a seed evaluation that moves them makes both stale.
    write_best_threshold(cfg, 0.8 * best)
    assert not make_ir_label.is_done(cfg) and not make_sem_seg.is_done(cfg)
    with pytest.raises(StaleOutputsError, match="irn.ir_label.fg_threshold"):
        run_stage("make_ir_label", cfg)


SEG = ("data=synthetic", "model=deeplab_v2_tiny", "trainer=cpu", "logger=none", "model.train.label_dir=gt",
       "model.train.max_steps=1", "model.train.batch_size=2", "model.train.crop_size=64", "model.eval.export_test=false",
       "+trainer.enable_progress_bar=false")


def test_segmentation_backbone_from_the_cam_classifier(compose_cfg, synthetic_root):
    cfg = compose_cfg(*SEG, f"data.root={synthetic_root}", "model.init_from_cam=true")
    with pytest.raises(FileNotFoundError, match="model.init_from_cam: the CAM checkpoint .* run train_cam"):
        train_seg.run(cfg)
    fake_cam_checkpoint(cfg)
    metrics = train_seg.run(cfg)
    assert metrics["pretrained_tensors_loaded"] > 0
    cam_backbone = torch.load(cfg.artifacts.cam_ckpt, map_location="cpu", weights_only=False)["state_dict"]
    seg = torch.load(cfg.artifacts.seg_ckpt, map_location="cpu", weights_only=False)["state_dict"]
    # One step moves the weights a little; two independent random inits differ by ~√2 of their norm.
    for name in ("backbone.conv1.weight", "backbone.layer4.1.conv2.weight"):
        assert (seg[name] - cam_backbone[name]).norm() < 0.3 * cam_backbone[name].norm(), name
    off = compose_cfg(*SEG, f"data.root={synthetic_root}")
    assert off.model.init_from_cam is False and train_seg.backbone_source(off, "model") is None
