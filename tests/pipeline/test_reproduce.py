"""The `make reproduce-weak` / `make reproduce-semi` driver: VOC-tree check, config, skip-aware chain
(stages faked), the Makefile targets' argument errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import advcam_pl
from advcam_pl.io import atomic_save_json
from advcam_pl.pipeline import STAGES, reproduce, run_pipeline

WEAK = [s for s in STAGES if s not in ("train_semi", "eval_semi", "eval_walk_ceiling")]  # the last: the demo's reference
SEMI = [*WEAK[:WEAK.index("eval_sem_seg") + 1], "train_semi", "eval_semi"]


def table_rows(out: str) -> dict[str, list[str]]:
    return {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip()) for line in out.splitlines())}


def test_complete_stages_are_skipped_incomplete_ones_run(fake_stages, synthetic_root, tmp_path):
    cfg = reproduce.compose_reproduction(synthetic_root, [f"paths.work_dir={tmp_path}"])
    fake_stages.done = {"train_cam", "make_cam", "eval_cam", "train_irn"}
    results = run_pipeline(cfg)
    assert fake_stages.calls == ["make_ir_label", "make_sem_seg", "eval_sem_seg", "train_seg", "eval_seg"]
    assert [r.stage for r in results] == WEAK
    assert results[0].metrics == {"skipped": True} and results[-1].metrics == {"objective": 0.5}

    fake_stages.runs.clear()
    run_pipeline(cfg)  # everything is complete now: nothing runs again
    assert fake_stages.calls == []

    cfg.skip_done = False  # unless told to redo complete stages
    run_pipeline(cfg)
    assert fake_stages.calls == WEAK


def test_config_is_the_weak_chain_in_a_fixed_work_dir(synthetic_root):
    cfg = reproduce.compose_reproduction(synthetic_root, ["paths.root_dir=/proj"])
    assert list(cfg.stages) == WEAK
    assert cfg.data.name == "voc12" and cfg.data.root == str(synthetic_root.resolve())
    assert (cfg.classifier.name, cfg.cam.name, cfg.model.name) == ("resnet50", "advcam", "deeplab_v2")
    assert cfg.model.module.depth == 101 and cfg.model.module.pretrained == "imagenet"
    assert cfg.paths.work_dir == "/proj/outputs/reproduce_weak"
    assert cfg.artifacts.seg_ckpt.startswith("/proj/outputs/reproduce_weak/")
    assert reproduce.check_voc_root(cfg) == []  # train_aug, val, train and test lists all there


def test_main_runs_the_chain_and_prints_the_table(synthetic_root, tmp_path, fake_stages, capsys):
    fake_stages.done = set(STAGES) - {"eval_seg"}
    fake_stages.on_run["eval_seg"] = lambda cfg: atomic_save_json(cfg.artifacts.seg_metrics,
                                                                   {"split": "val", "miou": 0.4321})
    code = reproduce.main(["--voc-root", str(synthetic_root), f"paths.work_dir={tmp_path}", "logger=none"])
    assert code == 0 and fake_stages.calls == ["eval_seg"]
    rows = table_rows(capsys.readouterr().out)
    assert rows["mIoU (%)"] == ["paper", "ours"]
    assert rows["DeepLab-v2 + CRF (val)"] == ["68.1", "43.2"]
    assert rows["pseudo mask (train)"] == ["69.9", "-"]  # eval_sem_seg counted as done, wrote nothing

    assert reproduce.main(["--voc-root", str(synthetic_root), f"paths.work_dir={tmp_path}", "--status"]) == 0
    assert "eval_seg       done" in capsys.readouterr().out


def test_a_tree_that_is_not_voc_is_refused_naming_the_missing_entry(
    synthetic_root, tmp_path, fake_stages, capsys
):
    broken = tmp_path / "VOC2012"
    shutil.copytree(synthetic_root, broken)
    shutil.rmtree(broken / "SegmentationClassAug")
    assert reproduce.main(["--voc-root", str(broken), f"paths.work_dir={tmp_path / 'w'}"]) == 2
    err = capsys.readouterr().err
    assert "is not a usable VOC2012 tree" in err and str(broken / "SegmentationClassAug") in err
    assert fake_stages.calls == []

    assert reproduce.main(["--voc-root", str(tmp_path / "nowhere"), f"paths.work_dir={tmp_path / 'w'}"]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err


def test_semi_config_is_the_weak_chain_to_the_masks_then_cct_in_the_weak_work_dir(synthetic_root):
    cfg = reproduce.compose_reproduction(synthetic_root, ["paths.root_dir=/proj"], "reproduce_semi")
    weak = reproduce.compose_reproduction(synthetic_root, ["paths.root_dir=/proj"])
    assert list(cfg.stages) == SEMI
    assert (cfg.semi.name, cfg.semi.weak_labels, cfg.semi.module.depth, cfg.semi.train.epochs) == ("cct", "sem_seg", 50, 80)
    assert cfg.semi.data.weak_label_dir == weak.artifacts.sem_seg_dir  # the masks reproduce-weak makes
    assert cfg.paths.work_dir == weak.paths.work_dir == "/proj/outputs/reproduce_weak"
    shared = ("cam_ckpt", "cam_dir", "cam_metrics", "ir_label_dir", "irn_ckpt", "sem_seg_dir", "sem_seg_metrics")
    assert all(cfg.artifacts[key] == weak.artifacts[key] for key in shared)
    assert reproduce.check_voc_root(cfg) == []


def test_semi_main_runs_to_cct_and_prints_the_semi_table(synthetic_root, tmp_path, fake_stages, capsys):
    fake_stages.done = set(SEMI) - {"eval_semi"}
    fake_stages.on_run["eval_semi"] = lambda cfg: atomic_save_json(cfg.artifacts.semi_metrics, {
        "split": "val", "miou": 0.5, "miou_no_crf": 0.45, "crf": {"t": 10}, "table_a1": "method bkg"})
    args = ["--experiment", "reproduce_semi", "--voc-root", str(synthetic_root), f"paths.work_dir={tmp_path}"]
    assert reproduce.main(args) == 0 and fake_stages.calls == ["eval_semi"]
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert rows["cct + advcam masks, MS + flip + CRF (val)"] == ["77.8", "50.0"]
    assert rows["cct + advcam masks, MS + flip (val)"] == ["-", "45.0"]
    assert rows["cct + advcam masks (test server)"] == ["76.9", "-"]
    assert rows["CCT, its own weak labels (CCT paper)"] == ["73.2", "-"]
    assert "per-class IoU on val (paper Table A1 layout):\nmethod bkg" in out


def run_make(repo_root: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``make <args>`` in the checkout with this interpreter's bin folder as the venv's, and the
    ``setup`` stamp in ``tmp_path`` (nothing gets installed)."""
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "python").is_file(), f"no python in {bin_dir}"
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()  # newer than pyproject.toml: setup is done
    env = {**os.environ, "PYTHONPATH": str(Path(advcam_pl.__file__).parents[1])}
    return subprocess.run(["make", "--no-print-directory", "-C", str(repo_root), *args, f"VENV={venv}",
                           f"BIN={bin_dir}"], capture_output=True, text=True, env=env, timeout=300)


def test_make_reproduce_semi_without_voc_root_prints_its_usage(repo_root, tmp_path):
    done = run_make(repo_root, tmp_path, "reproduce-semi")
    assert done.returncode == 2
    assert "usage: make reproduce-semi VOC_ROOT=/path/to/VOCdevkit/VOC2012" in done.stdout


def test_make_reproduce_semi_refuses_a_tree_that_is_not_voc(repo_root, tmp_path):
    nowhere = tmp_path / "nowhere"
    done = run_make(repo_root, tmp_path, "reproduce-semi", f"VOC_ROOT={nowhere}", f"ARGS=paths.work_dir={tmp_path / 'w'}")
    assert "is not a usable VOC2012 tree" in done.stderr and str(nowhere) in done.stderr
    assert "reproduce-semi] Error 2" in done.stderr  # the driver's exit status 2, passed on by make
    assert done.returncode == 2 and not (tmp_path / "w").exists()
