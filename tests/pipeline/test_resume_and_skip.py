"""Resume and "done" on the per-image stages: temporary files of killed writes are removed, truncated
outputs are made again, broken or non-finite inputs are errors naming the file, skipped images
travel down the chain (issue 14 items 1, 4, 5 and 7)."""

import logging
from pathlib import Path

import numpy as np
import pytest
from test_refine_stages import OVERRIDES, fake_cams

from advcam_pl.advcam.cam_io import cam_path, load_cam, save_cam
from advcam_pl.data.affinity import read_label_png
from advcam_pl.errors import CorruptFileError, NonFiniteError
from advcam_pl.io import temp_path
from advcam_pl.pipeline import eval_cam, make_ir_label, run_pipeline, run_stage
from advcam_pl.pipeline.skipped import read_skipped, record_skipped

LABELS = (*OVERRIDES, "data.infer_list=train", "data.eval_list=train", "irn.num_workers=0")


@pytest.fixture
def cfg(compose_cfg, synthetic_root):
    cfg = compose_cfg(*LABELS, f"data.root={synthetic_root}")
    fake_cams(cfg, synthetic_root)
    return cfg


def test_temp_files_of_a_killed_write_are_removed_when_the_stage_starts(cfg, killed_writer_temp):
    out = Path(cfg.artifacts.ir_label_dir)
    out.mkdir(parents=True)
    killed = killed_writer_temp(out / "2007_000032.png")
    alive = temp_path(out / "2007_000034.png")  # a writer of this (live) process: left alone
    alive.write_bytes(b"writing")
    killed.write_bytes(b"\x89PNG half")
    earlier = out / ".2007_000033.png.x1y2z3w4.tmp"  # an earlier version's name
    earlier.write_bytes(b"half")
    mine = out / "notes.tmp"  # not one of ours
    mine.write_text("keep")
    run_stage("make_ir_label", cfg)
    assert not killed.exists() and not earlier.exists() and mine.exists() and alive.exists()


def test_a_truncated_output_is_made_again_byte_identically(cfg):
    run_stage("make_ir_label", cfg)
    out = Path(cfg.artifacts.ir_label_dir)
    png = sorted(out.glob("*.png"))[3]
    whole = png.read_bytes()
    png.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CorruptFileError, match=rf"label PNG {png} cannot be read"):
        read_label_png(png)
    assert not make_ir_label.is_done(cfg)
    assert run_stage("make_ir_label", cfg)["num_written"] == 1
    assert png.read_bytes() == whole and make_ir_label.is_done(cfg)


def test_broken_and_non_finite_cam_files_are_errors_naming_them(cfg):
    path = cam_path(cfg.artifacts.cam_dir, sorted(Path(cfg.artifacts.cam_dir).glob("*.npz"))[0].stem)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileNotFoundError, match=rf"missing or incomplete in .*{path.stem}\.npz.*run make_cam"):
        run_stage("make_ir_label", cfg)  # checked before any label is made
    with pytest.raises(CorruptFileError, match=rf"CAM file {path} is not a readable \.npz.*run make_cam again"):
        load_cam(path)

    keys = np.array([0])
    nan_map = np.full((1, 8, 8), np.nan, np.float32)
    with pytest.raises(NonFiniteError, match=rf"image {path.stem}: 64 of 64 values of its high_res map are NaN"):
        save_cam(path, keys, np.zeros((1, 2, 2), np.float32), nan_map)
    np.savez(path, keys=keys, cam=np.zeros((1, 2, 2), np.float32), high_res=nan_map)  # an older version's file
    with pytest.raises(NonFiniteError, match=rf"image {path.stem}: .*NaN"):
        run_stage("make_ir_label", cfg)


def test_skipped_images_are_recorded_and_honoured_downstream(cfg, caplog):
    cam_dir = Path(cfg.artifacts.cam_dir)
    bad = sorted(cam_dir.glob("*.npz"))[2].stem
    cam_path(cam_dir, bad).unlink()  # make_cam with data.skip_bad=true skipped the unreadable image...
    record_skipped(cam_dir, {bad: "cannot read image JPEGImages/x.jpg"})  # ...and recorded it

    cfg.stages = ["make_ir_label", "eval_cam"]
    with caplog.at_level(logging.INFO, logger="advcam_pl.pipeline"):
        results = run_pipeline(cfg)
    labels, seeds = (r.metrics for r in results)
    assert labels["skipped_ids"] == [bad] and labels["num_written"] == labels["num_images"] - 1
    assert read_skipped(cfg.artifacts.ir_label_dir) == {bad: "cannot read image JPEGImages/x.jpg"}
    assert make_ir_label.is_done(cfg) and eval_cam.is_done(cfg)
    assert seeds["skipped_ids"] == [bad] and seeds["num_images"] == labels["num_images"] - 1
    assert f"1 image(s) left out as unreadable: {bad}" in caplog.text  # the run's summary

    # IRN and DeepLab training leave it out too (it has no label)
    from advcam_pl.data.affinity import AffinityDataset
    from advcam_pl.data.segmentation import SegmentationDataModule

    affinity = AffinityDataset(cfg.data.root, "train", cfg.artifacts.ir_label_dir, 64,
                               skip_ids=read_skipped(cfg.artifacts.ir_label_dir))
    assert bad not in affinity.ids and len(affinity.ids) == labels["num_images"] - 1
    seg = SegmentationDataModule(cfg.data.root, "train", "val", label_dir=cfg.artifacts.ir_label_dir,
                                 train_skip_ids=read_skipped(cfg.artifacts.ir_label_dir))
    seg.setup("fit")
    assert bad not in seg.train_set.ids


def test_eval_stages_redo_their_metrics_when_their_input_changes(cfg):
    run_stage("eval_cam", cfg)
    assert eval_cam.is_done(cfg)
    record_skipped(cfg.artifacts.cam_dir, {})  # no change: still done
    assert eval_cam.is_done(cfg)
    changed = cfg.copy()
    changed.eval_cam.thresholds.step = 0.05
    assert not eval_cam.is_done(changed)
    metrics = run_stage("eval_cam", changed)  # an evaluation is recomputed, not refused
    assert len(metrics["curve"]["thresholds"]) < len(run_stage("eval_cam", cfg)["curve"]["thresholds"])
