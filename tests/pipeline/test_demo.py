"""The `make demo` driver: one chain per seed method from conf/experiment/demo.yaml (stages faked)."""

from __future__ import annotations

import re

import pytest

from advcam_pl import demo
from advcam_pl.io import atomic_save_json

CHAIN = ["make_cam", "eval_cam", "make_ir_label", "train_irn", "make_sem_seg", "eval_sem_seg"]


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
        "eval_seg": lambda cfg: atomic_save_json(cfg.artifacts.seg_metrics, {"miou": value[cfg.cam.name] + 0.03}),
    }
    return fake_stages


def test_each_seed_method_runs_its_chain_and_only_advcam_trains_the_segmentation(
    fake_metrics, synthetic_root, tmp_path, capsys
):
    cfgs = demo.main(["--out", str(tmp_path), f"data.root={synthetic_root}"])
    assert fake_metrics.runs == [("train_cam", "cam"), *((s, "cam") for s in CHAIN),
                                 *((s, "advcam") for s in CHAIN), ("train_seg", "advcam"), ("eval_seg", "advcam")]
    assert cfgs["AdvCAM"].cam.climb.steps == 8 and "climb" not in cfgs["CAM"].cam
    assert cfgs["CAM"].paths.work_dir == str(tmp_path)

    rows = table_rows(capsys.readouterr().out)
    assert rows["seeds"] == ["seed", "+CRF", "mask", "seg", "val"]
    assert rows["CAM"] == ["10.0", "11.0", "12.0", "-"]
    assert rows["AdvCAM"] == ["20.0", "21.0", "22.0", "23.0"]

    fake_metrics.runs.clear()
    demo.main(["--out", str(tmp_path), f"data.root={synthetic_root}"])
    assert fake_metrics.runs == []  # every output is complete: a second run only prints the table
    assert table_rows(capsys.readouterr().out)["AdvCAM"] == ["20.0", "21.0", "22.0", "23.0"]


def test_seg_seeds_picks_whose_masks_train_the_segmentation(fake_metrics, synthetic_root, tmp_path, capsys):
    demo.main(["--out", str(tmp_path), f"data.root={synthetic_root}", "demo.seg_seeds=cam"])
    assert [run for run in fake_metrics.runs if run[0] in ("train_seg", "eval_seg")] == [
        ("train_seg", "cam"), ("eval_seg", "cam")]
    rows = table_rows(capsys.readouterr().out)
    assert rows["CAM"][-1] == "13.0" and rows["AdvCAM"][-1] == "-"

    with pytest.raises(ValueError, match="demo.seg_seeds='advcam_noreg' is not a method of demo.methods"):
        demo.main(["--out", str(tmp_path), f"data.root={synthetic_root}", "demo.seg_seeds=advcam_noreg"])
