"""The `make demo` driver: one chain per seed method from conf/experiment/demo.yaml (stages faked)."""

from __future__ import annotations

import re

import pytest
from tests.conftest import SYNTHETIC_KWARGS, generate_overrides

from advcam_pl import demo
from advcam_pl.io import atomic_save_json
from advcam_pl.pipeline.reference_rows import all_background_miou

CHAIN = ["make_cam", "eval_cam", "make_ir_label", "train_irn", "make_sem_seg", "eval_sem_seg", "eval_walk_ceiling"]
SEG = ["train_seg", "eval_seg"]
SEMI_STAGES = ("train_semi", "eval_semi")


def on_synthetic(root) -> list[str]:
    return [f"data.root={root}", *generate_overrides(**SYNTHETIC_KWARGS)]


def weak_runs(runs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [run for run in runs if run[0] not in SEMI_STAGES]


def table_rows(out: str) -> dict[str, list[str]]:
    rows = (re.split(r"\s+", line.strip()) for line in out.splitlines() if line.strip())
    return {cells[0]: cells[1:] for cells in rows}


@pytest.fixture
def fake_metrics(fake_stages):
    """The fake eval stages write metrics that depend on the seed method (AdvCAM's are higher)."""
    value = {"cam": 0.1, "advcam": 0.2}
    fake_stages.on_run = {
        "eval_cam": lambda cfg: atomic_save_json(cfg.artifacts.cam_metrics, {
            "seed_miou": value[cfg.cam.name], "seed_crf_miou": value[cfg.cam.name] + 0.01}),
        "eval_sem_seg": lambda cfg: atomic_save_json(cfg.artifacts.sem_seg_metrics, {"miou": value[cfg.cam.name] + 0.02}),
        "eval_walk_ceiling": lambda cfg: atomic_save_json(cfg.artifacts.walk_ceiling_metrics,
                                                          {"miou": value[cfg.cam.name] + 0.04}),
        "eval_seg": lambda cfg: atomic_save_json(cfg.artifacts.seg_metrics, {
            "miou": 0.5 if cfg.model.train.label_dir == "gt" else value[cfg.cam.name] + 0.03}),
    }
    return fake_stages


def test_each_seed_method_runs_its_chain_then_the_segmentation_network_on_gt_masks(
    fake_metrics, synthetic_root, tmp_path, capsys
):
    cfgs = demo.main(["--out", str(tmp_path), *on_synthetic(synthetic_root)])
    assert weak_runs(fake_metrics.runs) == [("train_cam", "cam"), *((s, "cam") for s in [*CHAIN, *SEG]),
                                            *((s, "advcam") for s in [*CHAIN, *SEG]), *((s, "advcam") for s in SEG)]
    assert cfgs["AdvCAM"].cam.climb.steps == 8 and "climb" not in cfgs["CAM"].cam
    assert cfgs["CAM"].paths.work_dir == str(tmp_path)

    out = capsys.readouterr().out
    rows = table_rows(out)
    assert rows["seeds"] == ["seed", "+CRF", "mask", "GT", "edges", "seg", "val"]
    assert rows["CAM"] == ["10.0", "11.0", "12.0", "14.0", "13.0"]
    assert rows["AdvCAM"] == ["20.0", "21.0", "22.0", "24.0", "23.0"]
    assert rows["seg"] == ["on", "GT", "masks", "-", "-", "-", "-", "50.0"]
    background = {split: f"{100 * all_background_miou(synthetic_root, split):.1f}" for split in ("train", "val")}
    assert rows["all"] == ["background", *[background["train"]] * 4, background["val"]]
    segmentation = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip()) for line in out.splitlines())}
    assert segmentation["DeepLab-v2 + CAM masks"] == ["13.0", "-"]
    assert segmentation["DeepLab-v2 + GT masks"] == ["50.0", "-"]

    fake_metrics.runs.clear()
    demo.main(["--out", str(tmp_path), *on_synthetic(synthetic_root)])
    assert fake_metrics.runs == []  # every output is complete: a second run only prints the table
    assert table_rows(capsys.readouterr().out)["AdvCAM"] == ["20.0", "21.0", "22.0", "24.0", "23.0"]


def test_without_references_there_are_no_reference_rows(fake_metrics, synthetic_root, tmp_path, capsys):
    demo.main(["--out", str(tmp_path), *on_synthetic(synthetic_root), "demo.references=false"])
    assert [run for run in fake_metrics.runs if run[0] in SEG] == [(s, m) for m in ("cam", "advcam") for s in SEG]
    rows = table_rows(capsys.readouterr().out)
    assert "seg" not in rows and "all" not in rows


def test_seg_seeds_picks_whose_masks_train_the_segmentation(fake_metrics, synthetic_root, tmp_path, capsys):
    demo.main(["--out", str(tmp_path), *on_synthetic(synthetic_root), "demo.seg_seeds=cam", "demo.references=false"])
    assert [run for run in fake_metrics.runs if run[0] in SEG] == [("train_seg", "cam"), ("eval_seg", "cam")]
    rows = table_rows(capsys.readouterr().out)
    assert rows["CAM"][-1] == "13.0" and rows["AdvCAM"][-1] == "-"

    with pytest.raises(ValueError, match="demo.seg_seeds='advcam_noreg' is not a method of demo.methods"):
        demo.main(["--out", str(tmp_path), *on_synthetic(synthetic_root), "demo.seg_seeds=advcam_noreg"])


def test_the_semi_half_trains_cct_once_per_weak_label_source_after_the_seed_methods(
    fake_metrics, synthetic_root, tmp_path, capsys
):
    value = {"sem_seg": {"advcam": 0.5, "cam": 0.4}, "none": {"advcam": 0.3}}
    fake_metrics.on_run["eval_semi"] = lambda cfg: atomic_save_json(cfg.artifacts.semi_metrics, {
        "miou": value[cfg.semi.weak_labels][cfg.cam.name], "miou_no_crf": 0.1, "crf": {"t": 10}})
    cfgs = demo.main(["--out", str(tmp_path), *on_synthetic(synthetic_root)])
    runs = fake_metrics.runs
    assert [run for run in runs if run[0] in SEMI_STAGES] == [
        ("train_semi", "advcam"), ("eval_semi", "advcam"), ("train_semi", "cam"), ("eval_semi", "cam"),
        ("train_semi", "advcam"), ("eval_semi", "advcam")]
    assert runs.index(("train_semi", "advcam")) > runs.index(("eval_seg", "advcam"))  # after the weak half
    semi = {label: cfgs[label] for label in ("CCT + AdvCAM masks", "CCT + CAM masks", "CCT without weak labels")}
    assert [cfg.semi.weak_labels for cfg in semi.values()] == ["sem_seg", "sem_seg", "none"]
    assert {cfg.semi.name for cfg in semi.values()} == {"cct_tiny"}
    assert len({cfg.artifacts.semi_ckpt for cfg in semi.values()}) == 3

    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip())
                                              for line in capsys.readouterr().out.splitlines())}
    assert rows["segmentation"] == ["MS", "MS+CRF"]
    assert rows["DeepLab-v2 + AdvCAM masks"] == ["23.0", "-"]  # the fake eval_seg wrote no CRF result
    assert rows["CCT + AdvCAM masks"] == ["10.0", "50.0"] and rows["CCT + CAM masks"] == ["10.0", "40.0"]
    assert rows["CCT without weak labels"] == ["10.0", "30.0"]


def test_a_synthetic_set_of_other_settings_is_refused_naming_the_file(fake_metrics, synthetic_root, tmp_path):
    """An old demo's data (say, smaller images) in the work dir would silently change every number."""
    with pytest.raises(SystemExit, match=r"synthetic\.json was generated with other settings \(.*long_side: \[48, 64\] "
                                         r"there, \[160, 192\] asked.*\); pass another --out"):
        demo.main(["--out", str(tmp_path), f"data.root={synthetic_root}"])
    assert fake_metrics.runs == []
