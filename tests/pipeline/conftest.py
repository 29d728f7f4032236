"""Fakes for the drivers' tests (stage modules that record calls instead of training) and a random
CAM classifier checkpoint for the stages that read one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch

import advcam_pl.pipeline as pipeline
from advcam_pl.pipeline import STAGES

# The file (cfg.artifacts key) that tells whether a stage is complete.
OUTPUT = {"train_cam": "cam_ckpt", "make_cam": "cam_dir", "eval_cam": "cam_metrics",
          "make_ir_label": "ir_label_dir", "train_irn": "irn_ckpt", "make_sem_seg": "sem_seg_dir",
          "eval_sem_seg": "sem_seg_metrics", "eval_walk_ceiling": "walk_ceiling_metrics", "train_seg": "seg_ckpt",
          "eval_seg": "seg_metrics",
          "train_semi": "semi_ckpt", "eval_semi": "semi_metrics"}


class FakeStages:
    """Stage modules that are complete when their name is in ``done`` or after they ran for the
    same output path (``cfg.artifacts``, so ``train_cam`` is shared by every seed method and
    ``make_cam`` is not). ``run`` records ``(stage, cfg.cam.name)`` in ``runs`` and calls
    ``on_run[stage](cfg)`` when given."""

    def __init__(self, done=()):
        self.done, self.written, self.runs, self.on_run = set(done), set(), [], {}

    @property
    def calls(self) -> list[str]:
        return [stage for stage, _ in self.runs]

    def module(self, name):
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}")

        def run(cfg):
            self.runs.append((name, cfg.cam.name))
            self.written.add(cfg.artifacts[OUTPUT[name]])
            if name in self.on_run:
                self.on_run[name](cfg)
            return {"objective": 0.5}

        def is_done(cfg):
            return name in self.done or cfg.artifacts[OUTPUT[name]] in self.written

        return SimpleNamespace(run=run, is_done=is_done)


@pytest.fixture
def fake_stages(monkeypatch):
    fakes = FakeStages()
    monkeypatch.setattr(pipeline, "stage_module", fakes.module)
    return fakes


@pytest.fixture(scope="session")
def random_cam_checkpoint(tmp_path_factory):
    """A random ResNet-18 CAMClassifier saved as a Lightning checkpoint (read-only for the tests)."""
    from advcam_pl.models.cam_classifier import CAMClassifier

    torch.manual_seed(0)
    model = CAMClassifier(depth=18, pretrained=None)
    path = tmp_path_factory.mktemp("ckpt") / "cam_classifier.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, path)
    return path
