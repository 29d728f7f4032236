"""The `make reproduce-weak` driver: VOC-tree check, config, skip-aware chain (stages faked)."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

import advcam_pl.pipeline as pipeline
from advcam_pl.pipeline import STAGES, reproduce


class FakeStages:
    """Stage modules whose ``is_done`` is true for the names in ``done``; ``run`` records the call."""

    def __init__(self, done=()):
        self.done, self.calls = set(done), []

    def module(self, name):
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}")

        def run(cfg):
            self.calls.append(name)
            self.done.add(name)  # a finished stage has complete outputs
            return {"objective": 0.5}

        return SimpleNamespace(run=run, is_done=lambda cfg: name in self.done)


@pytest.fixture
def fake_stages(monkeypatch):
    fakes = FakeStages()
    monkeypatch.setattr(pipeline, "stage_module", fakes.module)
    return fakes


def test_complete_stages_are_skipped_incomplete_ones_run(fake_stages):
    cfg = OmegaConf.create({"stages": list(STAGES), "seed": 0, "skip_done": False})
    fake_stages.done = {"train_cam", "make_cam", "eval_cam", "train_irn"}
    results = reproduce.run_chain(cfg)  # skips complete stages even where cfg.skip_done is false
    assert fake_stages.calls == ["make_ir_label", "make_sem_seg", "eval_sem_seg", "train_seg", "eval_seg"]
    assert dict(results)["train_cam"] == {"skipped": True}
    assert dict(results)["eval_seg"] == {"objective": 0.5}

    fake_stages.calls.clear()
    reproduce.run_chain(cfg)  # everything is complete now: nothing runs again
    assert fake_stages.calls == []


def test_config_is_the_weak_chain_in_a_fixed_work_dir(synthetic_root):
    cfg = reproduce.compose_config(synthetic_root, ["paths.root_dir=/proj"])
    assert list(cfg.stages) == list(STAGES)
    assert cfg.data.name == "voc12" and cfg.data.root == str(synthetic_root.resolve())
    assert (cfg.classifier.name, cfg.cam.name, cfg.model.name) == ("resnet50", "advcam", "deeplab_v2")
    assert cfg.model.module.depth == 101 and cfg.model.module.pretrained == "imagenet"
    assert cfg.paths.work_dir == "/proj/outputs/reproduce_weak"
    assert cfg.artifacts.seg_ckpt.startswith("/proj/outputs/reproduce_weak/")
    assert reproduce.check_voc_root(cfg) == []  # train_aug, val, train and test lists all there


def test_main_runs_the_chain_and_prints_the_table(synthetic_root, tmp_path, fake_stages, capsys):
    fake_stages.done = set(STAGES) - {"eval_seg"}
    code = reproduce.main(["--voc-root", str(synthetic_root), f"paths.work_dir={tmp_path}", "logger=none"])
    assert code == 0 and fake_stages.calls == ["eval_seg"]
    out = capsys.readouterr().out
    assert "paper" in out and "68.1" in out and "pseudo mask" in out

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
