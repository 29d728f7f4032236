"""The demo's reference rows: the walk with ground-truth boundaries (stage eval_walk_ceiling), the
all-background score, the segmentation network on ground-truth masks (pipeline/reference_rows.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.pipeline.test_refine_stages import OVERRIDES, fake_cams

from advcam_pl.advcam.cam_io import cam_path, load_cam
from advcam_pl.data.voc import VOCReader
from advcam_pl.evaluation import ConfusionMatrix
from advcam_pl.pipeline import eval_walk_ceiling, run_stage
from advcam_pl.pipeline.reference_rows import all_background_miou, gt_seg_overrides, reference_table_rows
from advcam_pl.refine.random_walk import sem_seg_labels


def walk_without_boundaries(cfg, settings) -> float:
    reader = VOCReader(cfg.data.root, cfg.data.eval_list)
    confusion = ConfusionMatrix()
    for image_id in reader.ids:
        mask, cam = reader.load_mask(image_id), load_cam(cam_path(cfg.artifacts.cam_dir, image_id))
        edge = torch.zeros(cam["cam"].shape[-2:])
        confusion.update(sem_seg_labels(cam["cam"], cam["keys"], edge, mask.shape, **settings), mask)
    return confusion.miou


def test_walk_ceiling_from_fake_seeds(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", "irn.random_walk.sem_seg_bg_threshold=auto")
    fake_cams(cfg, synthetic_root)
    with pytest.raises(FileNotFoundError, match="run eval_cam first"):
        run_stage("eval_walk_ceiling", cfg)
    seeds = run_stage("eval_cam", cfg)
    assert not eval_walk_ceiling.is_done(cfg)
    metrics = run_stage("eval_walk_ceiling", cfg)
    written = json.loads(Path(cfg.artifacts.walk_ceiling_metrics).read_text())
    assert written["miou"] == pytest.approx(metrics["miou"]) and eval_walk_ceiling.is_done(cfg)
    assert written["num_images"] == len(VOCReader(synthetic_root, cfg.data.eval_list).ids)
    settings = written["settings"]
    assert settings["exp_times"] == 5  # a number in the config is used as it is
    best = json.loads(Path(cfg.artifacts.cam_metrics).read_text())["best_threshold"]
    assert settings["bg_threshold"] == pytest.approx(0.25 ** (np.log(best) / np.log(0.15)))  # `auto`
    # Near-perfect fake seeds on a 12×16 grid: the ×4 upsampling costs a little, the boundaries
    # keep the walk close to the seeds, and the same walk without boundaries floods the images.
    assert metrics["miou"] > 0.85 and metrics["miou"] > seeds["seed_miou"] - 0.1
    assert metrics["miou"] > walk_without_boundaries(cfg, settings) + 0.1


def test_all_background_miou_is_the_background_iou_over_the_present_classes(synthetic_root):
    reader = VOCReader(synthetic_root, "val")
    counted = np.concatenate([m[m != 255] for m in map(reader.load_mask, reader.ids)])
    expected = np.mean(counted == 0) / len(np.unique(counted))
    assert all_background_miou(synthetic_root, "val") == pytest.approx(expected)


def test_gt_seg_overrides_name_their_own_files(compose_cfg, synthetic_root, tmp_path):
    base = [*OVERRIDES, f"data.root={synthetic_root}", "model=deeplab_v2_tiny"]
    gt, pseudo = compose_cfg(*base, *gt_seg_overrides()), compose_cfg(*base)
    assert gt.model.train.label_dir == "gt"
    for key in ("seg_ckpt", "seg_pred_dir", "seg_metrics"):
        assert gt.artifacts[key] != pseudo.artifacts[key] and "deeplab_v2_tiny_gt" in Path(gt.artifacts[key]).name
        assert Path(gt.artifacts[key]).is_relative_to(tmp_path)
    rows = dict(reference_table_rows(pseudo, gt))
    assert rows["seg on GT masks"] == [None] * 5  # eval_seg has not run
    Path(gt.artifacts.seg_metrics).parent.mkdir(parents=True, exist_ok=True)
    Path(gt.artifacts.seg_metrics).write_text(json.dumps({"miou": 0.7}))
    rows = dict(reference_table_rows(pseudo, gt))
    assert rows["seg on GT masks"] == [None, None, None, None, 0.7]
    on_train, on_val = all_background_miou(synthetic_root, "train"), all_background_miou(synthetic_root, "val")
    assert rows["all background"] == [on_train] * 4 + [on_val]
