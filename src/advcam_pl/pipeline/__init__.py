"""The pipeline as a row of stages, one module each, in the paper's vocabulary.

Each stage module has ``run(cfg) -> dict`` (its metrics; ``"objective"`` is the headline number
a sweeper optimises) and ``is_done(cfg) -> bool`` (its outputs are complete and were made with this
config's settings and inputs, so a re-run may skip it); an evaluation stage may also have
``recorded_metrics(cfg) -> dict``, what a skipped run returns besides ``"skipped"``. Stages talk only through the files named in
``cfg.artifacts``. Every driver (``python -m advcam_pl``, ``advcam_pl.demo``,
``pipeline.reproduce``) composes a config and calls :func:`run_pipeline`, which first checks the
config (:mod:`advcam_pl.config_checks`), then runs the stages with SIGTERM/SIGINT turned into a
prompt exit that keeps finished work (:mod:`advcam_pl.signals`).
"""

from __future__ import annotations

import importlib
import logging
import signal
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
    "eval_walk_ceiling",
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
    """Run one stage, or skip it when ``skip_done`` and its outputs are complete (never when
    ``cfg.overwrite`` names it: then it computes its outputs again)."""
    from advcam_pl.pipeline.provenance import overwrites

    module = stage_module(name)
    skip_done = cfg.get("skip_done", True) if skip_done is None else skip_done
    if skip_done and not overwrites(cfg, name) and module.is_done(cfg):
        log.info("stage %s: outputs complete, skipped", name)
        # an evaluation stage hands back what it recorded, so a sweeper still gets the objective
        recorded = getattr(module, "recorded_metrics", None)
        return {**(recorded(cfg) if recorded else {}), "skipped": True}
    log.info("stage %s: running", name)
    return module.run(cfg) or {}


class StageResult(NamedTuple):
    stage: str
    metrics: dict  # what run(cfg) returned, or {"skipped": True} (+ the recorded metrics)
    seconds: float  # wall time, skipping included


def run_pipeline(cfg: DictConfig) -> list[StageResult]:
    """Check the config, then run ``cfg.stages`` in order with ``cfg.num_threads`` torch threads after
    seeding with ``cfg.seed``; a stage whose outputs are complete is skipped when ``cfg.skip_done``.
    SIGTERM/SIGINT stop it with :class:`~advcam_pl.signals.Interrupted` (exit status 128 + signal),
    finished work kept."""
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from advcam_pl.config_checks import check_config
    from advcam_pl.pipeline.common import seed_everything, set_num_threads
    from advcam_pl.pipeline.provenance import run_id
    from advcam_pl.signals import Interrupted, exit_on_signals

    names = stage_names(cfg.stages)
    check_config(cfg)
    run_id()  # exported before any DDP rank is launched, so the ranks share it
    set_num_threads(cfg.get("num_threads"))
    seed_everything(cfg.get("seed", 0))
    results: list[StageResult] = []
    with exit_on_signals():
        for name in names:
            start = time.perf_counter()
            try:
                metrics = run_stage(name, cfg)
            except (Interrupted, SIGTERMException) as stop:
                stop = stop if isinstance(stop, Interrupted) else Interrupted(signal.SIGTERM)
                log.warning("stage %s: %s after %.1f s; finished outputs are kept: run the same command to go on",
                            name, stop, time.perf_counter() - start)
                raise stop from None
            results.append(StageResult(name, metrics, time.perf_counter() - start))
            log.info("stage %s: %.1f s", name, results[-1].seconds)
    _log_summary(results)
    return results


def _log_summary(results: Sequence[StageResult]) -> None:
    """One line per stage, with the images it left out (``data.skip_bad``)."""
    lines = []
    for result in results:
        state = "skipped (complete)" if result.metrics.get("skipped") else f"{result.seconds:.1f} s"
        line = f"  {result.stage:<14} {state}"
        skipped = result.metrics.get("skipped_ids")
        if skipped:
            line += f"; {len(skipped)} image(s) left out as unreadable: {', '.join(skipped[:10])}" + \
                (" ..." if len(skipped) > 10 else "")
        lines.append(line)
    if lines:
        log.info("pipeline summary:\n%s", "\n".join(lines))
