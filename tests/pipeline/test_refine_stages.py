"""The refinement stages on the synthetic data: make_ir_label → train_irn → make_sem_seg → eval_sem_seg.

CAM files are faked from the ground truth (blurred, shrunken masks), so the chain runs without the
CAM stages and its outputs mean something; every stage must resume by writing only missing files.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from advcam_pl.advcam.cam_io import cam_path, save_cam
from advcam_pl.data.voc import VOCReader
from advcam_pl.io import atomic_save_palette_png
from advcam_pl.models.resnet import ResNet
from advcam_pl.pipeline import run_stage

OVERRIDES = ("logger=none", "data=synthetic", "data.num_workers=0", "trainer=cpu", "irn=resnet18", "irn.num_workers=0",
             "irn.module.radius=5", "irn.train.crop_size=64", "irn.train.batch_size=4", "irn.train.max_epochs=1",
             "irn.train.max_steps=3", "irn.train.mean_shift_images=4", "irn.random_walk.exp_times=5")


def fake_cams(cfg, root):
    """CAM files of data.infer_list from the GT: per class a blurred, eroded mask, max-normalised."""
    reader = VOCReader(root, cfg.data.infer_list)
    for image_id in reader.ids:
        mask = reader.load_mask(image_id)
        keys = np.flatnonzero(reader.labels(image_id))
        maps = []
        for k in keys:
            m = ndimage.gaussian_filter(ndimage.binary_erosion(mask == k + 1, iterations=2).astype(np.float32), 3)
            maps.append(m / (m.max() + 1e-5))
        high_res = np.stack(maps) if maps else np.zeros((0, *mask.shape), np.float32)
        cam = torch.nn.functional.interpolate(torch.from_numpy(high_res)[None], size=(
            (mask.shape[0] + 3) // 4, (mask.shape[1] + 3) // 4), mode="bilinear", align_corners=False)[0]
        save_cam(cam_path(cfg.artifacts.cam_dir, image_id), keys, cam.numpy(), high_res)
    return reader.ids


def fake_cam_checkpoint(cfg):
    backbone = ResNet(18)
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    Path(cfg.artifacts.cam_ckpt).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state}, cfg.artifacts.cam_ckpt)


def mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in Path(folder).glob("*.png")}


def delete_some(folder, names):
    for name in names:
        (Path(folder) / name).unlink()


def test_make_ir_label_writes_every_label_and_resumes(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", "irn.num_workers=2")
    ids = fake_cams(cfg, synthetic_root)
    from advcam_pl.pipeline import make_ir_label

    assert not make_ir_label.is_done(cfg)
    metrics = run_stage("make_ir_label", cfg)
    assert metrics["num_written"] == len(ids) and make_ir_label.is_done(cfg)
    assert 0 < metrics["fg_fraction"] < 1 and metrics["ignore_fraction"] > 0
    label = np.array(Image.open(Path(cfg.artifacts.ir_label_dir) / f"{ids[0]}.png"))
    assert set(np.unique(label)) <= {0, 255, *(np.flatnonzero(VOCReader(synthetic_root, "train_aug")
                                                              .labels(ids[0])) + 1)}
    before = mtimes(cfg.artifacts.ir_label_dir)
    delete_some(cfg.artifacts.ir_label_dir, [f"{ids[1]}.png", f"{ids[5]}.png"])
    assert run_stage("make_ir_label", cfg)["num_written"] == 2
    after = mtimes(cfg.artifacts.ir_label_dir)
    assert after.keys() == before.keys()
    assert all(after[k] == before[k] for k in before if k not in (f"{ids[1]}.png", f"{ids[5]}.png"))
    assert run_stage("make_ir_label", cfg) == {"skipped": True}


def test_refine_chain_runs_and_resumes(compose_cfg, synthetic_root):
    # The 12 "train" images only (IRN trains on data.train_list, which make_ir_label must cover).
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}",
                      "data.train_list=train", "data.infer_list=train")
    ids = fake_cams(cfg, synthetic_root)
    fake_cam_checkpoint(cfg)  # irn=resnet18 initialises the frozen backbone from the CAM classifier
    run_stage("make_ir_label", cfg)

    metrics = run_stage("train_irn", cfg)
    assert Path(cfg.artifacts.irn_ckpt).is_file() and metrics["steps"] == 3
    assert metrics["backbone_tensors_loaded"] > 0 and np.isfinite(metrics["objective"])
    ckpt = torch.load(cfg.artifacts.irn_ckpt, map_location="cpu", weights_only=False)
    assert torch.any(ckpt["state_dict"]["mean_shift.running_mean"] != 0)
    assert not [p for p in Path(cfg.artifacts.irn_ckpt).parent.iterdir() if p.name.startswith(".")]

    from advcam_pl.pipeline import make_sem_seg

    metrics = run_stage("make_sem_seg", cfg)
    assert metrics["num_written"] == len(ids) and make_sem_seg.is_done(cfg)
    sem_seg_dir = Path(cfg.artifacts.sem_seg_dir)
    with Image.open(sem_seg_dir / f"{ids[0]}.png") as png:
        assert png.mode == "P" and png.size == Image.open(synthetic_root / "JPEGImages" / f"{ids[0]}.jpg").size
    before = mtimes(sem_seg_dir)
    delete_some(sem_seg_dir, [f"{ids[3]}.png"])
    assert run_stage("make_sem_seg", cfg)["num_written"] == 1
    after = mtimes(sem_seg_dir)
    assert all(after[k] == before[k] for k in before if k != f"{ids[3]}.png")

    metrics = run_stage("eval_sem_seg", cfg)
    saved = json.loads(Path(cfg.artifacts.sem_seg_metrics).read_text())
    assert metrics["objective"] == metrics["miou"] == pytest.approx(saved["miou"])
    assert saved["num_images"] == len(VOCReader(synthetic_root, cfg.data.eval_list).ids)
    assert len(saved["per_class_iou"]) == 21 and "background" in saved["table"] and 0 <= saved["miou"] <= 1
    # A pseudo mask holds background and the image's own classes only.
    reader = VOCReader(synthetic_root, cfg.data.infer_list)
    for image_id in ids[:6]:
        present = set(np.unique(np.array(Image.open(sem_seg_dir / f"{image_id}.png"))))
        assert present <= {0, *(np.flatnonzero(reader.labels(image_id)) + 1)}


def test_missing_cams_are_reported(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}")
    with pytest.raises(FileNotFoundError, match="run make_cam first"):
        run_stage("make_ir_label", cfg)
    os.makedirs(cfg.artifacts.sem_seg_dir)
    with pytest.raises(FileNotFoundError, match="pseudo masks"):
        run_stage("eval_sem_seg", cfg)


def test_eval_sem_seg_reruns_when_masks_are_newer_than_its_metrics(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}")
    from advcam_pl.pipeline import eval_sem_seg

    reader = VOCReader(synthetic_root, cfg.data.eval_list)
    sem_seg_dir = Path(cfg.artifacts.sem_seg_dir)
    for image_id in reader.ids:  # perfect pseudo masks: the GT itself
        atomic_save_palette_png(sem_seg_dir / f"{image_id}.png", reader.load_mask(image_id))
    assert not eval_sem_seg.is_done(cfg)
    assert run_stage("eval_sem_seg", cfg)["miou"] == pytest.approx(1.0)
    assert eval_sem_seg.is_done(cfg) and run_stage("eval_sem_seg", cfg) == {"skipped": True}

    # New masks written after the metrics: the JSON is stale, the stage runs again.
    worse = np.zeros_like(reader.load_mask(reader.ids[0]))
    atomic_save_palette_png(sem_seg_dir / f"{reader.ids[0]}.png", worse)
    earlier = (sem_seg_dir / f"{reader.ids[0]}.png").stat().st_mtime - 10  # no clock-tick ties
    os.utime(cfg.artifacts.sem_seg_metrics, (earlier, earlier))
    assert not eval_sem_seg.is_done(cfg)
    metrics = run_stage("eval_sem_seg", cfg)
    assert metrics["miou"] < 1.0
    assert json.loads(Path(cfg.artifacts.sem_seg_metrics).read_text())["miou"] == pytest.approx(metrics["miou"])
    assert eval_sem_seg.is_done(cfg)
