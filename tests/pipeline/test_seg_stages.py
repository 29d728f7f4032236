"""Stages train_seg → eval_seg end to end on the tiny synthetic set (ResNet-18 DeepLab-v2, GT masks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from prediction_testing import assert_predictions_written

from advcam_pl.data.segmentation import SegmentationDataModule
from advcam_pl.data.voc import VOCReader
from advcam_pl.pipeline import eval_seg, train_seg

OVERRIDES = ("data=synthetic", "model=deeplab_v2_tiny", "trainer=cpu", "logger=none", "model.train.label_dir=gt",
             "model.train.max_steps=2", "model.train.batch_size=2", "model.train.crop_size=64",
             "model.eval.scales=[0.75,1.0]", "+trainer.enable_progress_bar=false")


def test_train_batches_are_augmented_crops_with_ignore_padding(synthetic_root):
    dm = SegmentationDataModule(synthetic_root, "train_aug", "val", label_dir="gt", batch_size=3,
                                crop_size=80, scale_range=(0.5, 0.6))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (3, 3, 80, 80) and batch["label"].shape == (3, 80, 80)
    assert batch["label"].dtype == torch.int64
    # A 48-64 px image at scale ≤ 0.6 is far smaller than the crop: the rest is ignore / mean colour.
    padded = (batch["image"] == 0).all(1)
    assert padded.float().mean() > 0.5
    assert torch.all(batch["label"][padded] == 255)
    assert set(batch["label"][~padded].unique().tolist()) <= {*range(21), 255}
    assert len(set(batch["label"][~padded].unique().tolist()) & set(range(21))) > 1
    freq = dm.class_frequencies()
    assert freq.shape == (21,) and freq[0] > 0


def test_missing_pseudo_masks_are_named(synthetic_root, tmp_path):
    (tmp_path / "sem_seg").mkdir()
    dm = SegmentationDataModule(synthetic_root, "train_aug", "val", label_dir=tmp_path / "sem_seg")
    with pytest.raises(FileNotFoundError, match="have no label PNG in"):
        dm.setup("fit")


def test_train_seg_then_eval_seg_end_to_end(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}")
    assert not train_seg.is_done(cfg) and not eval_seg.is_done(cfg)

    metrics = train_seg.run(cfg)
    assert train_seg.is_done(cfg) and metrics["steps"] == 2 and np.isfinite(metrics["train_loss"])
    ckpt = Path(cfg.artifacts.seg_ckpt)
    # the checkpoint and its provenance record; no temp or progress file left
    assert sorted(p.name for p in ckpt.parent.iterdir()) == [ckpt.name, f"{ckpt.name}.provenance.json"]

    metrics = eval_seg.run(cfg)
    assert eval_seg.is_done(cfg)
    saved = json.loads(Path(cfg.artifacts.seg_metrics).read_text())
    assert saved["miou"] == metrics["miou"] == metrics["objective"] and 0 <= saved["miou"] <= 1
    assert "miou_no_crf" in saved and saved["table_a1"].splitlines()[0].split()[1:3] == ["bkg", "aero"]

    server = assert_predictions_written(Path(cfg.artifacts.seg_pred_dir), synthetic_root, saved["test_archive"])
    test_ids = VOCReader(synthetic_root, "test").ids

    # Resume: a missing test PNG makes the stage incomplete; the re-run writes only that one.
    kept = server / f"{test_ids[1]}.png"
    mtime = kept.stat().st_mtime_ns
    (server / f"{test_ids[0]}.png").unlink()
    assert not eval_seg.is_done(cfg)
    eval_seg.run(cfg)
    assert eval_seg.is_done(cfg) and (server / f"{test_ids[0]}.png").is_file()
    assert kept.stat().st_mtime_ns == mtime

    # Other eval settings: the old predictions no longer count.
    assert not eval_seg.is_done(compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", "model.eval.flip=false"))
