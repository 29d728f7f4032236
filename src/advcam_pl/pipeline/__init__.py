"""The pipeline as a row of stages, one module each, in the paper's vocabulary.

Each stage module has ``run(cfg) -> dict`` (its metrics; ``"objective"`` is the headline number
a sweeper optimises) and ``is_done(cfg) -> bool`` (its outputs are complete, so a re-run may skip
it). Stages talk only through the files named in ``cfg.artifacts``. Every driver (``python -m
advcam_pl``, ``advcam_pl.demo``, ``pipeline.reproduce``) composes a config and calls
:func:`run_pipeline`.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Sequence
from typing import NamedTuple

from omegaconf import DictConfig

log = logging.getLogger(__name__)

STAGES = (
    "train_cam",
    "make_cam",
    "eval_cam",
    "make_ir_label",
    "train_irn",
    "make_sem_seg",
    "eval_sem_seg",
    "train_seg",
    "eval_seg",
    "train_semi",
    "eval_semi",
)


def stage_module(name: str):
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; expected one of {', '.join(STAGES)}")
    return importlib.import_module(f"advcam_pl.pipeline.{name}")


def stage_names(stages: str | Sequence[str]) -> list[str]:
    names = [stages] if isinstance(stages, str) else list(stages)
    for name in names:
        stage_module(name)  # validates the name before anything runs
    return names


def run_stage(name: str, cfg: DictConfig, skip_done: bool | None = None) -> dict:
    """Run one stage, or skip it when ``skip_done`` and its outputs are complete."""
    module = stage_module(name)
    skip_done = cfg.get("skip_done", True) if skip_done is None else skip_done
    if skip_done and module.is_done(cfg):
        log.info("stage %s: outputs complete, skipped", name)
        return {"skipped": True}
    log.info("stage %s: running", name)
    return module.run(cfg) or {}


class StageResult(NamedTuple):
    stage: str
    metrics: dict  # what run(cfg) returned, or {"skipped": True}
    seconds: float  # wall time, skipping included


def run_pipeline(cfg: DictConfig) -> list[StageResult]:
    """Run ``cfg.stages`` in order after seeding with ``cfg.seed``; a stage whose outputs are
    complete is skipped when ``cfg.skip_done``."""
    from advcam_pl.pipeline.common import seed_everything

    names = stage_names(cfg.stages)
    seed_everything(cfg.get("seed", 0))
    results = []
    for name in names:
        start = time.perf_counter()
        metrics = run_stage(name, cfg)
        results.append(StageResult(name, metrics, time.perf_counter() - start))
        log.info("stage %s: %.1f s", name, results[-1].seconds)
    return results
