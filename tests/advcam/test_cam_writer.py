"""make_cam under Lightning: CAMPredictor + CAMWriter write one complete .npz per image, resume,
and write every image exactly once under DDP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from advcam_testing import LoggingCAMWriter, TinyCAMNet, logged_writes

from advcam_pl.advcam import adv_climb, load_cam
from advcam_pl.advcam.analysis import ClimbAnalysis
from advcam_pl.advcam.writer import CAMPredictor, CAMWriter, ImagesPerSecondBar
from advcam_pl.data.datamodules import InferenceDataModule
from advcam_pl.data.voc import VOCReader

SCALES = (1.0, 0.5)
CLIMB = {"steps": 3}


def trainer(tmp_path, callbacks, **kwargs) -> pl.Trainer:
    kwargs = {"devices": 1, **kwargs}
    return pl.Trainer(accelerator="cpu", inference_mode=False, logger=False, enable_checkpointing=False,
                      enable_model_summary=False, default_root_dir=tmp_path, callbacks=callbacks, **kwargs)


def predictor(cam_dir, method="advcam", **kwargs) -> CAMPredictor:
    return CAMPredictor(TinyCAMNet(seed=1), method=method, scales=SCALES, climb=CLIMB, cam_dir=cam_dir, **kwargs)


def datamodule(root, split="train", **kwargs) -> InferenceDataModule:
    return InferenceDataModule(root, split, scales=SCALES, num_workers=0, **kwargs)


@pytest.mark.parametrize(("method", "batch_size"), [("cam", 1), ("advcam", 1), ("advcam", 4)])
def test_writes_one_cam_file_per_image(synthetic_root, tmp_path, method, batch_size):
    cam_dir = tmp_path / method
    writer, bar = CAMWriter(cam_dir), ImagesPerSecondBar()
    trainer(tmp_path, [writer, bar]).predict(
        predictor(cam_dir, method), datamodule=datamodule(synthetic_root, batch_size=batch_size),
        return_predictions=False)
    reader = VOCReader(synthetic_root, "train")
    assert sorted(p.stem for p in cam_dir.glob("*.npz")) == sorted(reader.ids)
    assert not list(cam_dir.glob(".*.tmp"))
    assert writer.written == len(reader.ids)
    assert bar.predict_progress_bar.n == bar.predict_progress_bar.total == len(reader.ids)  # counts images
    image_id = reader.ids[0]
    cam = load_cam(cam_dir / f"{image_id}.npz")
    height, width = reader.load_image(image_id).shape[:2]
    keys = np.nonzero(reader.labels(image_id))[0]
    assert cam["keys"].dtype == np.int64 and np.array_equal(cam["keys"], keys)
    assert cam["cam"].dtype == np.float32 and cam["cam"].shape == (len(keys), -(-height // 4), -(-width // 4))
    assert cam["high_res"].shape == (len(keys), height, width)
    assert np.allclose(cam["high_res"].max((1, 2)), 1.0, atol=1e-3)


def test_written_maps_equal_adv_climb(synthetic_root, tmp_path):
    dm = datamodule(synthetic_root)
    dm.setup("predict")
    item = dm.dataset[0]
    model = TinyCAMNet(seed=1).eval()
    keys = torch.nonzero(item["label"])[:, 0]
    expected = adv_climb(model, item["images"], keys, scales=SCALES, **CLIMB)
    got = CAMPredictor(model, scales=SCALES, climb=CLIMB).predict_step(item, 0)
    assert np.array_equal(got.arrays["keys"], expected.keys.numpy())
    assert np.allclose(got.arrays["high_res"], expected.high_res.numpy(), atol=1e-6)


def test_a_batch_of_images_equals_adv_climb_image_by_image(two_size_root):
    dm = datamodule(two_size_root, batch_size=4)
    dm.setup("predict")
    batch = max(dm.batched, key=len)
    assert len(batch) > 1
    batch[0] = dict(batch[0], label=torch.zeros(20))  # an image without class in the batch
    model = TinyCAMNet(seed=1).eval()
    got = CAMPredictor(model, scales=SCALES, climb=CLIMB).predict_step(batch, 0)
    assert [p.image_id for p in got] == [item["id"] for item in batch]
    assert got[0].arrays["keys"].shape == (0,) and got[0].arrays["high_res"].shape == (0, *batch[0]["size"])
    for item, prediction in zip(batch[1:], got[1:]):
        expected = adv_climb(model, item["images"], torch.nonzero(item["label"])[:, 0], scales=SCALES, **CLIMB)
        assert np.array_equal(prediction.arrays["keys"], expected.keys.numpy())
        assert np.allclose(prediction.arrays["high_res"], expected.high_res.numpy(), rtol=1e-5, atol=1e-6)


def test_image_without_class_gets_an_empty_file(synthetic_root, tmp_path):
    dm = datamodule(synthetic_root)
    dm.setup("predict")
    item = dict(dm.dataset[0], label=torch.zeros(20))
    prediction = predictor(tmp_path / "cams").predict_step(item, 0)
    height, width = item["size"]
    assert prediction.arrays["keys"].shape == (0,)
    assert prediction.arrays["cam"].shape == (0, -(-height // 4), -(-width // 4))
    assert prediction.arrays["high_res"].shape == (0, height, width)


def test_resume_after_an_interrupted_run_writes_only_the_missing_images(synthetic_root, tmp_path):
    cam_dir, log_dir = tmp_path / "cams", tmp_path / "log"
    ids = VOCReader(synthetic_root, "train").ids
    crashing = LoggingCAMWriter(cam_dir, log_dir, fail_after=4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer(tmp_path, [crashing], enable_progress_bar=False).predict(
            predictor(cam_dir), datamodule=datamodule(synthetic_root), return_predictions=False)
    first = {p.stem: p.stat().st_mtime_ns for p in cam_dir.glob("*.npz")}
    assert len(first) == 4 and not list(cam_dir.glob(".*.tmp"))

    # make_cam's way: the datamodule leaves the finished ids out (batches of images of one size)
    dm = datamodule(synthetic_root, exclude=lambda i: (cam_dir / f"{i}.npz").exists(), batch_size=3)
    writer = LoggingCAMWriter(cam_dir, log_dir)
    trainer(tmp_path, [writer]).predict(predictor(cam_dir), datamodule=dm, return_predictions=False)
    assert writer.written == len(ids) - 4
    assert sorted(logged_writes(log_dir)) == sorted(ids)  # each image written once over both runs
    assert {p.stem: p.stat().st_mtime_ns for p in cam_dir.glob("*.npz") if p.stem in first} == first

    # without the datamodule's help, the predictor and the writer still skip existing files
    writer = LoggingCAMWriter(cam_dir, log_dir)
    trainer(tmp_path, [writer]).predict(predictor(cam_dir), datamodule=datamodule(synthetic_root),
                                        return_predictions=False)
    assert writer.written == 0 and writer.skipped == len(ids)
    assert sorted(logged_writes(log_dir)) == sorted(ids)


@pytest.mark.ddp
@pytest.mark.parametrize("batch_size", [1, 3])
def test_ddp_two_processes_write_every_image_exactly_once(synthetic_root, tmp_path, batch_size):
    """Two CPU processes (gloo): every image written once, the analysis summed over both."""
    cam_dir, log_dir = tmp_path / "cams", tmp_path / "log"
    ids = VOCReader(synthetic_root, "train").ids
    analysis = ClimbAnalysis(tmp_path / "analysis.json", num_maps=CLIMB["steps"])
    trainer(tmp_path, [LoggingCAMWriter(cam_dir, log_dir), analysis], devices=2, strategy="ddp_spawn",
            use_distributed_sampler=False, enable_progress_bar=False).predict(
        predictor(cam_dir, record_trajectory=True),
        datamodule=datamodule(synthetic_root, with_mask=True, batch_size=batch_size), return_predictions=False)
    writes = logged_writes(log_dir)
    assert sorted(writes) == sorted(ids)  # all images, none twice
    assert len(list(log_dir.glob("writes_*.txt"))) == 2  # both processes wrote
    assert sorted(p.stem for p in cam_dir.glob("*.npz")) == sorted(ids)
    curves = json.loads((tmp_path / "analysis.json").read_text())
    assert curves["num_images"] == curves["num_images_with_mask"] == len(ids)
