"""Summary tables: column layout, missing values, unreadable metrics files, segmentation and CCT rows."""

from __future__ import annotations

import logging
import re

from omegaconf import OmegaConf

from advcam_pl.io import atomic_save_json
from advcam_pl.pipeline.report import (
    Column,
    chain_metrics,
    format_table,
    read_metrics,
    segmentation_table,
    semi_label,
)


def test_values_are_percent_right_aligned_under_their_headers_and_missing_ones_dashed():
    table = format_table("method", [Column("seed"), Column("paper", width=5, scale=1), Column("seg val", width=8)],
                         [("CAM", [0.4567, 48.8, None]), ("AdvCAM plus", [1.0, None, 0.05])])
    assert table.splitlines() == [
        "method        seed paper  seg val",
        "---------------------------------",
        "CAM           45.7  48.8        -",
        "AdvCAM plus  100.0     -      5.0",
    ]


def test_the_label_column_has_a_minimum_width_and_a_separator_of_choice():
    table = format_table("seeds", [Column("seed")], [("CAM", [0.5])], label_width=8, sep="  ")
    assert table.splitlines()[::2] == ["seeds       seed", "CAM         50.0"]


def test_metrics_of_a_stage_not_run_yet_are_empty_and_a_broken_file_is_named(tmp_path, caplog):
    assert read_metrics(tmp_path / "missing.json") == {}
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert read_metrics(broken) == {}
    assert str(broken) in caplog.text


def test_segmentation_metrics_count_only_for_a_chain_that_evaluates_the_segmentation(tmp_path):
    atomic_save_json(tmp_path / "seg.json", {"miou": 0.5})
    artifacts = {k: str(tmp_path / f"{k}.json") for k in ("cam_metrics", "sem_seg_metrics")}
    cfg = OmegaConf.create({"stages": "eval_seg", "artifacts": {**artifacts, "seg_metrics": str(tmp_path / "seg.json")}})
    assert chain_metrics(cfg) == {"cam": {}, "mask": {}, "walk": {}, "seg": {"miou": 0.5}}
    cfg.stages = ["train_cam", "make_cam"]
    assert chain_metrics(cfg)["seg"] == {}


def test_segmentation_rows_give_the_miou_without_and_with_crf_of_each_network():
    table = segmentation_table({
        "DeepLab-v2 + AdvCAM masks": {"miou": 0.30, "miou_no_crf": 0.25, "crf": {"t": 10}},
        "CCT + CAM masks": {"miou": 0.40, "crf": None},  # evaluated without the CRF
        "CCT without weak labels": {},  # not evaluated yet
    })
    rows = [re.split(r"\s{2,}", line.strip()) for line in table.splitlines()]
    assert rows[0] == ["segmentation", "MS", "MS+CRF"]
    assert rows[2:] == [["DeepLab-v2 + AdvCAM masks", "25.0", "30.0"], ["CCT + CAM masks", "40.0", "-"],
                        ["CCT without weak labels", "-", "-"]]


def test_a_cct_run_is_named_by_its_weak_label_source():
    def label(weak_labels, cam="advcam"):
        return semi_label(OmegaConf.create({"semi": {"name": "cct", "weak_labels": weak_labels}, "cam": {"name": cam}}))

    assert label("sem_seg") == "cct + advcam masks"
    assert label("ir_label", cam="cam") == "cct + cam IR labels"
    assert label("none") == label("none", cam="cam") == "cct, no weak labels"
