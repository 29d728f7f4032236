"""The dashboards' pictures and tables: PNG/CSV files under the CSV logger's folder, media files in an
offline W&B run, and nothing at all (no climb recorded) when ``viz`` is off."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from advcam_pl.data.voc import VOCReader
from advcam_pl.pipeline import eval_cam, make_cam
from advcam_pl.pipeline.report import segmentation_summary
from advcam_pl.viz.render import CAPTION_HEIGHT
from advcam_pl.viz.stages import log_summary, pick_ids

OVERRIDES = ("data=synthetic", "data.infer_list=train", "classifier=resnet18", "trainer=cpu",
             "+trainer.enable_progress_bar=false", "cam.climb.steps=2", "cam.scales=[1.0]", "viz.num_images=2")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_make_cam_and_eval_cam_write_pictures_per_stage_and_id_beside_the_csv_logger(
        compose_cfg, synthetic_root, tmp_path, random_cam_checkpoint):
    cfg = compose_cfg(*OVERRIDES, "logger=csv", f"data.root={synthetic_root}",
                      f"artifacts.cam_ckpt={random_cam_checkpoint}", "cam.analysis=true")
    reader = VOCReader(synthetic_root, "train")
    ids = pick_ids(cfg, reader.ids)
    assert len(ids) == 2 and ids == [reader.ids[0], reader.ids[-1]]
    make_cam.run(cfg)
    media = tmp_path / "csv" / "make_cam" / "media"
    for image_id in ids:
        height, width = reader.load_image(image_id).shape[:2]
        maps = np.asarray(Image.open(media / "maps" / f"{image_id}.png"))
        assert maps.shape[0] == height + CAPTION_HEIGHT and maps.shape[1] > 4 * width  # image|CAM|AdvCAM|GT
        strip = np.asarray(Image.open(media / "climb" / f"{image_id}.png"))
        num_classes = int(reader.labels(image_id).sum())
        assert strip.shape[0] >= num_classes * (height + CAPTION_HEIGHT)  # one row per class
    assert sorted(p.stem for p in (media / "climb").glob("*.png")) == sorted(ids)  # those images only
    fig6a = read_csv(media / "analysis" / "fig6a_seed_miou.csv")
    assert fig6a[0] == ["t", "seed_miou"] and [r[0] for r in fig6a[1:]] == ["0", "1"]  # cam.climb.steps=2 maps

    eval_cam.run(cfg)
    media = tmp_path / "csv" / "eval_cam" / "media"
    assert sorted(p.stem for p in (media / "seed").glob("*.png")) == sorted(ids)
    table = read_csv(media / "per_class_iou.csv")
    assert table[0] == ["class", "iou"] and len(table) == 1 + 21 and table[1][0] == "background"
    assert len(read_csv(media / "miou_vs_threshold.csv")) == 1 + len(eval_cam.thresholds_from_cfg(cfg))


@pytest.mark.parametrize("off", ["viz=none", "logger=none"])
def test_no_pictures_cost_nothing(compose_cfg, synthetic_root, tmp_path, random_cam_checkpoint, monkeypatch, off):
    recorded = []
    real = make_cam.CAMPredictor

    def spy(*args, **kwargs):
        recorded.append(kwargs.get("record_trajectory", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(make_cam, "CAMPredictor", spy)
    cfg = compose_cfg(*OVERRIDES, "logger=csv", off, f"data.root={synthetic_root}",
                      f"artifacts.cam_ckpt={random_cam_checkpoint}")
    make_cam.run(cfg)
    eval_cam.run(cfg)
    assert recorded == [False]  # one predictor, for the CAM files, without trajectories
    assert not list(tmp_path.glob("csv/*/media"))


def test_offline_wandb_run_holds_the_media(compose_cfg, synthetic_root, tmp_path, monkeypatch):
    from tests.pipeline.test_eval_cam import write_maps  # hand-made maps: no classifier needed

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_cfg("data=synthetic", "cam=cam", "logger=wandb", "viz.num_images=2", f"data.root={synthetic_root}")
    write_maps(cfg, synthetic_root, fg_value=0.5)
    eval_cam.run(cfg)
    runs = list(tmp_path.glob("wandb/offline-run-*/files/media"))
    assert len(runs) == 1
    ids = pick_ids(cfg, VOCReader(synthetic_root, "train").ids)
    images = [p.name for p in runs[0].glob("images/eval_cam/seed/*.png")]
    assert sorted(name.rsplit("_", 2)[0] for name in images) == sorted(ids)
    assert list(runs[0].glob("table/eval_cam/per_class_iou_*.table.json"))
    assert list(runs[0].glob("table/eval_cam/miou_vs_threshold*.table.json"))


def test_a_summary_table_goes_to_the_loggers_as_a_table(compose_cfg, tmp_path):
    table = segmentation_summary({"DeepLab-v2 + AdvCAM masks": {"miou": 0.30, "miou_no_crf": 0.25, "crf": {"t": 10}},
                                  "CCT, no weak labels": {}})
    log_summary(compose_cfg("logger=csv"), "segmentation", table)
    assert read_csv(tmp_path / "csv" / "report" / "media" / "segmentation.csv") == [
        ["segmentation", "MS", "MS+CRF"], ["DeepLab-v2 + AdvCAM masks", "25.0", "30.0"], ["CCT, no weak labels", "", ""]]
    log_summary(compose_cfg("logger=csv", "viz=none", "paths.output_dir=" + str(tmp_path / "off")), "x", table)
    assert not (tmp_path / "off").exists()


def test_label_maps_and_per_class_iou_of_the_mask_and_segmentation_stages(compose_cfg, synthetic_root, tmp_path):
    from advcam_pl.io import atomic_save_palette_png
    from advcam_pl.pipeline import eval_sem_seg
    from advcam_pl.viz.stages import show_label_maps

    cfg = compose_cfg("data=synthetic", "logger=csv", "viz.ids=[syn_000003,not_an_id]", f"data.root={synthetic_root}")
    reader = VOCReader(synthetic_root, cfg.data.eval_list)
    for image_id in reader.ids:  # pseudo masks equal to the GT
        atomic_save_palette_png(f"{cfg.artifacts.sem_seg_dir}/{image_id}.png", reader.load_mask(image_id))
    assert eval_sem_seg.run(cfg)["miou"] == pytest.approx(1.0)
    table = read_csv(tmp_path / "csv" / "eval_sem_seg" / "media" / "per_class_iou.csv")
    assert table[1] == ["background", "1.0"]

    show_label_maps(cfg, [], "make_sem_seg", "pseudo_mask", cfg.artifacts.sem_seg_dir, cfg.data.eval_list)  # no logger
    from advcam_pl.pipeline.common import stage_loggers

    with stage_loggers(cfg, "make_sem_seg") as loggers:
        show_label_maps(cfg, loggers, "make_sem_seg", "pseudo_mask", cfg.artifacts.sem_seg_dir, cfg.data.eval_list)
    pictures = list((tmp_path / "csv" / "make_sem_seg" / "media").rglob("*.png"))
    assert [p.relative_to(tmp_path / "csv" / "make_sem_seg" / "media").as_posix() for p in pictures] == \
        ["pseudo_mask/syn_000003.png"]  # viz.ids: only the listed id of this list
    picture = np.asarray(Image.open(pictures[0]))
    height, width = reader.load_image("syn_000003").shape[:2]
    gt = picture[CAPTION_HEIGHT:, -width:]  # the last panel (GT) equals the mask panel: masks are the GT
    np.testing.assert_array_equal(gt, picture[CAPTION_HEIGHT:, width + 2:2 * width + 2])


def test_training_curves_and_learning_rate_reach_the_logger(compose_cfg, synthetic_root, tmp_path):
    from advcam_pl.pipeline import train_cam

    cfg = compose_cfg("data=synthetic", "classifier=resnet18", "classifier.train.max_epochs=1",
                      "classifier.train.crop_size=32", "classifier.train.resize_long=[32,48]", "logger=csv",
                      "trainer=cpu", "+trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
                      f"data.root={synthetic_root}")
    train_cam.run(cfg)
    rows = read_csv(tmp_path / "csv" / "train_cam" / "metrics.csv")
    columns = rows[0]
    for name in ("train/loss_step", "train/loss_epoch", "val/loss", "val/mAP"):
        assert name in columns
    lr = [c for c in columns if c.startswith("lr-")]
    assert lr, columns  # the LearningRateMonitor of conf/callbacks/default.yaml
    steps = [r for r in rows[1:] if r[columns.index("train/loss_step")]]
    assert len(steps) >= 2  # a curve, not a point


def test_eval_seg_shows_its_val_predictions_and_per_class_iou_with_and_without_crf(
        compose_cfg, synthetic_root, tmp_path):
    from advcam_pl.pipeline import eval_seg, train_seg

    cfg = compose_cfg("data=synthetic", "model=deeplab_v2_tiny", "trainer=cpu", "logger=csv",
                      "model.train.label_dir=gt", "model.train.max_steps=1", "model.train.batch_size=2",
                      "model.train.crop_size=64", "model.eval.scales=[1.0]", "model.eval.export_test=false",
                      "+trainer.enable_progress_bar=false", "viz.num_images=3", f"data.root={synthetic_root}")
    train_seg.run(cfg)
    eval_seg.run(cfg)
    media = tmp_path / "csv" / "eval_seg" / "media"
    ids = pick_ids(cfg, VOCReader(synthetic_root, "val").ids)
    assert len(ids) == 3 and sorted(p.stem for p in (media / "prediction").glob("*.png")) == sorted(ids)
    table = read_csv(media / "per_class_iou.csv")
    assert table[0] == ["class", "iou", "iou_no_crf"] and len(table) == 1 + 21  # iou: after the CRF


def test_viz_settings_are_checked_and_unquoted_voc_ids_are_named():
    from advcam_pl.config import compose_config
    from advcam_pl.config_checks import config_errors

    errors = config_errors(compose_config(["viz.ids=[2007_000032]", "viz.alpha=2", "viz.num_images=-1"]))
    assert any(e.startswith("viz.ids must be null or a list of image ids as strings (quote them") and "2007000032" in e
               for e in errors)
    assert any(e.startswith("viz.alpha must be") for e in errors) and any(e.startswith("viz.num_images") for e in errors)
    assert not [e for e in config_errors(compose_config(["viz.ids=['2007_000032']"])) if e.startswith("viz")]


def test_plain_cam_shows_its_maps_from_the_cam_files_without_climbing(
        compose_cfg, synthetic_root, tmp_path, random_cam_checkpoint):
    cfg = compose_cfg(*(o for o in OVERRIDES if not o.startswith("cam.climb")), "cam=cam", "logger=csv",
                      f"data.root={synthetic_root}",
                      f"artifacts.cam_ckpt={random_cam_checkpoint}")
    make_cam.run(cfg)
    media = tmp_path / "csv" / "make_cam" / "media"
    ids = pick_ids(cfg, VOCReader(synthetic_root, "train").ids)
    assert sorted(p.relative_to(media).as_posix() for p in media.rglob("*.png")) == sorted(f"maps/{i}.png" for i in ids)
    height, width = VOCReader(synthetic_root, "train").load_image(ids[0]).shape[:2]
    picture = np.asarray(Image.open(media / "maps" / f"{ids[0]}.png"))
    assert picture.shape == (height + CAPTION_HEIGHT, 3 * width + 2 * 2, 3)  # image | CAM | GT
