"""The `make reproduce-weak` driver: VOC-tree check, config, skip-aware chain (stages faked)."""

from __future__ import annotations

import re
import shutil

from advcam_pl.io import atomic_save_json
from advcam_pl.pipeline import STAGES, reproduce, run_pipeline


def test_complete_stages_are_skipped_incomplete_ones_run(fake_stages, synthetic_root, tmp_path):
    cfg = reproduce.compose_weak(synthetic_root, [f"paths.work_dir={tmp_path}"])
    fake_stages.done = {"train_cam", "make_cam", "eval_cam", "train_irn"}
    results = run_pipeline(cfg)
    assert fake_stages.calls == ["make_ir_label", "make_sem_seg", "eval_sem_seg", "train_seg", "eval_seg"]
    assert [r.stage for r in results] == list(STAGES)
    assert results[0].metrics == {"skipped": True} and results[-1].metrics == {"objective": 0.5}

    fake_stages.runs.clear()
    run_pipeline(cfg)  # everything is complete now: nothing runs again
    assert fake_stages.calls == []

    cfg.skip_done = False  # unless told to redo complete stages
    run_pipeline(cfg)
    assert fake_stages.calls == list(STAGES)


def test_config_is_the_weak_chain_in_a_fixed_work_dir(synthetic_root):
    cfg = reproduce.compose_weak(synthetic_root, ["paths.root_dir=/proj"])
    assert list(cfg.stages) == list(STAGES)
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
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip())
                                              for line in capsys.readouterr().out.splitlines())}
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
