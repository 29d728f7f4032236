"""Stage eval_cam on hand-made maps: the sweep's best threshold, the JSON, and the skip rule."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from advcam_pl.advcam.cam_io import cam_path, save_cam
from advcam_pl.data.voc import VOCReader
from advcam_pl.evaluation import miou_from_confusion
from advcam_pl.pipeline import eval_cam
from advcam_pl.refine.crf import crf_seed_confusion

OVERRIDES = ("data=synthetic", "cam=cam", "logger=none")


def write_maps(cfg, root, fg_value):
    """Maps equal to ``fg_value`` on each GT object and 0.1 elsewhere: any threshold in
    [0.1, fg_value) gives a perfect seed (up to the 255 band), the others do not."""
    reader = VOCReader(root, cfg.data.eval_list)
    for image_id in reader.ids:
        mask = reader.load_mask(image_id)
        keys = np.flatnonzero(reader.labels(image_id))
        high_res = np.stack([np.where(mask == k + 1, fg_value, 0.1) for k in keys]).astype(np.float32)
        save_cam(cam_path(cfg.artifacts.cam_dir, image_id), keys, high_res[:, ::4, ::4], high_res)
    return reader


def test_eval_cam_finds_the_threshold_that_separates_objects(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}")
    write_maps(cfg, synthetic_root, fg_value=0.5)
    metrics = eval_cam.run(cfg)
    assert metrics["seed_miou"] == pytest.approx(1.0)
    assert 0.1 <= metrics["best_threshold"] < 0.5
    saved = json.loads(Path(cfg.artifacts.cam_metrics).read_text())
    assert saved["seed_miou"] == metrics["seed_miou"]
    curve = saved["curve"]
    assert len(curve["thresholds"]) == len(curve["miou"]) == len(eval_cam.thresholds_from_cfg(cfg))
    # Above the objects' value every pixel is background: the curve must drop there.
    assert curve["miou"][-1] < 0.9


def test_missing_cam_file_names_it(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}")
    reader = write_maps(cfg, synthetic_root, fg_value=0.5)
    missing = cam_path(cfg.artifacts.cam_dir, reader.ids[0])
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=reader.ids[0]):
        eval_cam.run(cfg)


def test_is_done_only_while_metrics_are_newer_than_the_maps(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}")
    reader = write_maps(cfg, synthetic_root, fg_value=0.5)
    assert not eval_cam.is_done(cfg)
    eval_cam.run(cfg)
    assert eval_cam.is_done(cfg)
    newer = cam_path(cfg.artifacts.cam_dir, reader.ids[0])
    later = Path(cfg.artifacts.cam_metrics).stat().st_mtime + 10
    os.utime(newer, (later, later))
    assert not eval_cam.is_done(cfg)


def test_seed_crf_is_the_crf_of_the_best_threshold(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", "eval_cam.crf=true", "irn.num_workers=0")
    reader = write_maps(cfg, synthetic_root, fg_value=0.5)
    metrics = eval_cam.run(cfg)
    items = []
    for image_id in reader.ids:
        data = np.load(cam_path(cfg.artifacts.cam_dir, image_id))
        items.append((reader.load_image(image_id), data["high_res"], data["keys"], reader.load_mask(image_id)))
    expected = miou_from_confusion(crf_seed_confusion(items, metrics["best_threshold"]))
    assert metrics["seed_crf_miou"] == pytest.approx(expected)
    assert len(metrics["per_class_iou_crf"]) == len(metrics["per_class_iou"]) == 21
