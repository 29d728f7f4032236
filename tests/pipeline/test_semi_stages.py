"""Stages train_semi → eval_semi on the tiny synthetic set (semi=cct_tiny): resume after a kill, the
missing-mask error, the metrics and the VOC test-server export, one set of files per weak-label source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
from prediction_testing import assert_predictions_written

from advcam_pl.data.voc import VOCReader
from advcam_pl.io import atomic_save_palette_png
from advcam_pl.pipeline import eval_semi, train_semi

# 12 weak images in batches of 4: 3 steps per epoch; 32 px crops and one test scale keep it fast.
OVERRIDES = ("data=synthetic", "semi=cct_tiny", "trainer=cpu", "logger=none", "callbacks=none",
             "+trainer.enable_progress_bar=false", "semi.data.crop_size=32", "semi.data.base_size=48",
             "semi.eval.scales=[1.0]")


def write_pseudo_masks(cfg, root: Path, skip: int = 0) -> list[str]:
    """The weak chain's sem_seg folder, faked from the GT masks; the first ``skip`` weak ids left out.
    Returns the weak ids (train_aug − train)."""
    labelled = set(VOCReader(root, "train").ids)
    reader = VOCReader(root, "train_aug")
    weak = [i for i in reader.ids if i not in labelled]
    for image_id in reader.ids:
        if image_id not in weak[:skip]:
            atomic_save_palette_png(Path(cfg.artifacts.sem_seg_dir) / f"{image_id}.png", reader.load_mask(image_id))
    return weak


class Killed(Exception):
    pass


class KillAfterStep(pl.Callback):
    """Stops the fit like a kill -9 would: an exception once ``step`` optimiser steps are done."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise Killed(f"killed after step {self.step}")


class FirstStep(pl.Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.step = trainer.global_step


def test_train_semi_resumes_a_killed_run_from_its_progress_checkpoint(compose_cfg, synthetic_root, monkeypatch):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", "semi.train.epochs=2",
                      "semi.train.save_every_n_steps=2", "semi.train.val_batches=2")
    write_pseudo_masks(cfg, synthetic_root)
    ckpt = Path(cfg.artifacts.semi_ckpt)
    progress = ckpt.with_name(f"{ckpt.stem}.progress.ckpt")
    assert not train_semi.is_done(cfg)

    monkeypatch.setattr(train_semi, "training_callbacks", lambda cfg, loggers: [KillAfterStep(4)])
    with pytest.raises(Killed):
        train_semi.run(cfg)
    assert progress.is_file() and not train_semi.is_done(cfg)  # the step-4 progress checkpoint, no final one

    first = FirstStep()
    monkeypatch.setattr(train_semi, "training_callbacks", lambda cfg, loggers: [first])
    metrics = train_semi.run(cfg)
    assert first.step == 4 and metrics["steps"] == 6 and metrics["epochs"] == 2  # 2 epochs of 3 steps in all
    assert (metrics["num_labelled_images"], metrics["num_weak_images"]) == (12, 12)
    assert np.isfinite(metrics["train_loss"]) and 0 <= metrics["val_miou_single_scale"] <= 1
    # the checkpoint and its provenance record; no temp or progress file left
    assert train_semi.is_done(cfg)
    assert sorted(p.name for p in ckpt.parent.iterdir()) == [ckpt.name, f"{ckpt.name}.provenance.json"]


def test_a_missing_pseudo_mask_stops_train_semi_naming_the_id_and_the_folder(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}")
    weak = write_pseudo_masks(cfg, synthetic_root, skip=1)
    with pytest.raises(FileNotFoundError) as err:
        train_semi.run(cfg)
    assert f"{weak[0]}.png is missing" in str(err.value) and cfg.artifacts.sem_seg_dir in str(err.value)
    assert not train_semi.is_done(cfg)


def test_each_weak_label_source_has_its_own_checkpoint_predictions_and_metrics(compose_cfg):
    runs = {(cam, weak): compose_cfg("data.root=/voc", f"cam={cam}", f"semi.weak_labels={weak}").artifacts
            for cam in ("cam", "advcam") for weak in ("sem_seg", "ir_label")}
    runs["none"] = compose_cfg("data.root=/voc", "semi.weak_labels=none").artifacts
    for key in ("semi_ckpt", "semi_pred_dir", "semi_metrics"):
        assert len({artifacts[key] for artifacts in runs.values()}) == 5
    assert Path(runs["advcam", "sem_seg"].semi_ckpt).name == "semi_cct_advcam_sem_seg.ckpt"
    assert Path(runs["none"].semi_metrics).name == "eval_semi_cct_no_weak_labels.json"


def test_eval_semi_writes_metrics_table_a1_and_the_test_server_export(compose_cfg, synthetic_root):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", "semi.weak_labels=none", "semi.train.epochs=1",
                      "semi.train.val_batches=0")
    train_semi.run(cfg)
    assert not eval_semi.is_done(cfg)
    metrics = eval_semi.run(cfg)
    assert eval_semi.is_done(cfg)
    saved = json.loads(Path(cfg.artifacts.semi_metrics).read_text())
    assert saved["miou"] == metrics["miou"] == metrics["objective"] and 0 <= saved["miou"] <= 1
    assert (saved["semi"], saved["weak_labels"], saved["cam"]) == ("cct_tiny", "none", None)
    assert saved["scales"] == [1.0] and saved["flip"] is True and saved["average"] == "raw"
    assert 0 <= saved["miou_no_crf"] <= 1 and saved["num_images"] == 8
    head, no_crf, crf = saved["table_a1"].splitlines()
    assert head.split()[1:3] == ["bkg", "aero"] and head.split()[-1] == "mIoU"
    assert no_crf.startswith("cct_tiny, no weak labels ") and crf.startswith("cct_tiny, no weak labels + CRF ")

    assert_predictions_written(Path(cfg.artifacts.semi_pred_dir), synthetic_root, saved["test_archive"])
    # Other test-time settings: the stage is no longer done.
    assert not eval_semi.is_done(compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", "semi.weak_labels=none",
                                             "semi.eval.average=softmax"))


def test_train_semi_starts_from_the_cam_classifier_with_init_from_cam(compose_cfg, synthetic_root):
    from tests.pipeline.test_refine_stages import fake_cam_checkpoint

    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", "semi.weak_labels=none", "semi.train.epochs=1",
                      "semi.train.val_batches=0", "semi.init_from_cam=true")
    with pytest.raises(FileNotFoundError, match="semi.init_from_cam: the CAM checkpoint .* run train_cam"):
        train_semi.run(cfg)
    fake_cam_checkpoint(cfg)
    assert train_semi.run(cfg)["backbone"].startswith(f"{cfg.artifacts.cam_ckpt} (ResNet-18")
    record = json.loads(Path(f"{cfg.artifacts.semi_ckpt}.provenance.json").read_text())
    assert record["inputs"]["pretrained"].startswith("sha256:") and record["settings"]["semi.init_from_cam"] is True
    assert train_semi.is_done(cfg)
    Path(cfg.artifacts.cam_ckpt).write_bytes(b"another classifier")  # a retrained classifier: not done
    assert not train_semi.is_done(cfg)


def test_the_demo_starts_cct_from_its_classifier(compose_cfg):
    cfg = compose_cfg("experiment=demo")
    assert cfg.semi.name == "cct_tiny" and cfg.semi.init_from_cam is True and cfg.semi.module.depth == 18
    assert compose_cfg().semi.init_from_cam is False  # the paper's CCT: ImageNet weights
