"""``auto`` refinement settings resolved for one run (rules: :mod:`advcam_pl.refine.auto_settings`).

``cfg.irn.ir_label.{fg_threshold, bg_threshold}`` and ``cfg.irn.random_walk.sem_seg_bg_threshold``
follow the seed evaluation's best threshold (``cfg.artifacts.cam_metrics``, written by eval_cam);
``cfg.irn.module.radius`` and ``cfg.irn.random_walk.exp_times`` follow the median stride-4 grid of
the ``cfg.data.infer_list`` images. A number in the config is used as it is (the VOC default).
Every resolved value is logged with where it came from.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from advcam_pl.pipeline.common import data_root, list_ids
from advcam_pl.refine import auto_settings as rules

log = logging.getLogger(__name__)


@lru_cache(maxsize=64)
def _log_once(message: str) -> None:
    """Stages resolve on every skip check and run: say each resolved value once per process."""
    log.info(message)


def best_seed_threshold(cfg: DictConfig) -> float:
    """``best_threshold`` of ``cfg.artifacts.cam_metrics``; a clear error when eval_cam has not run."""
    path = Path(cfg.artifacts.cam_metrics)
    if not path.is_file():
        raise FileNotFoundError(
            f"an `auto` IR-label / walk threshold needs the seed evaluation {path}: run eval_cam first "
            f"(cam={cfg.cam.name}), or set the thresholds to numbers"
        )
    try:
        value = json.loads(path.read_text())["best_threshold"]
    except (ValueError, KeyError) as err:
        raise ValueError(f"{path} has no `best_threshold` (not an eval_cam metrics file?): {err}") from err
    return float(value)


@lru_cache(maxsize=8)
def _median_grid(root: str, split: str) -> tuple[float, float]:
    from advcam_pl.data.voc import VOCReader

    return rules.typical_grid(rules.image_sizes(root, VOCReader(root, split).ids))


def dataset_grid(cfg: DictConfig) -> tuple[float, float]:
    """The median stride-4 grid ``(h, w)`` of the ``cfg.data.infer_list`` images."""
    list_ids(cfg, cfg.data.infer_list)  # generates the synthetic data if needed, checks the list
    return _median_grid(str(data_root(cfg)), str(cfg.data.infer_list))


def ir_label_thresholds(cfg: DictConfig) -> tuple[float, float]:
    """``(fg_threshold, bg_threshold)`` of ``cfg.irn.ir_label``, ``auto`` ones derived."""
    conf = cfg.irn.ir_label
    fg, bg = conf.fg_threshold, conf.bg_threshold
    if rules.is_auto(fg) or rules.is_auto(bg):
        best = best_seed_threshold(cfg)
        auto_fg, auto_bg = rules.ir_label_thresholds(best)
        fg = auto_fg if rules.is_auto(fg) else fg
        bg = auto_bg if rules.is_auto(bg) else bg
        _log_once(f"IR-label thresholds: fg {float(fg):.3f}, bg {float(bg):.3f} (auto from the seed's best "
                  f"threshold {best:.2f} in {cfg.artifacts.cam_metrics})")
    return float(fg), float(bg)


def random_walk_settings(cfg: DictConfig) -> dict:
    """``cfg.irn.random_walk`` as keyword arguments of ``sem_seg_labels``, ``auto`` ones derived."""
    rw = cfg.irn.random_walk
    bg, exp_times = rw.sem_seg_bg_threshold, rw.exp_times
    if rules.is_auto(bg):
        best = best_seed_threshold(cfg)
        bg = rules.walk_background(best)
        _log_once(f"random walk: background {bg:.3f} (auto from the seed's best threshold {best:.2f} in "
                  f"{cfg.artifacts.cam_metrics})")
    if rules.is_auto(exp_times):
        grid = dataset_grid(cfg)
        exp_times = rules.walk_exp_times(grid)
        _log_once(f"random walk: exp_times {exp_times} = {2**exp_times} steps (auto from the median stride-4 "
                  f"grid {grid[0]:g}x{grid[1]:g} of {cfg.data.infer_list})")
    return dict(radius=int(rw.radius), beta=float(rw.beta), exp_times=int(exp_times), bg_threshold=float(bg),
                cam_power=float(rw.cam_power), method=str(rw.get("method", "sparse")))


def irn_radius(cfg: DictConfig) -> int:
    """``cfg.irn.module.radius``, ``auto`` derived from the grid size."""
    radius = cfg.irn.module.radius
    if rules.is_auto(radius):
        grid = dataset_grid(cfg)
        radius = rules.irn_radius(grid)
        _log_once(f"IRN pair radius {radius} (auto from the median stride-4 grid {grid[0]:g}x{grid[1]:g} of "
                  f"{cfg.data.infer_list})")
    return int(radius)


RESOLVERS = {
    "irn.ir_label.fg_threshold": lambda cfg: ir_label_thresholds(cfg)[0],
    "irn.ir_label.bg_threshold": lambda cfg: ir_label_thresholds(cfg)[1],
    "irn.random_walk.sem_seg_bg_threshold": lambda cfg: random_walk_settings(cfg)["bg_threshold"],
    "irn.random_walk.exp_times": lambda cfg: random_walk_settings(cfg)["exp_times"],
    "irn.module.radius": irn_radius,
}


def resolved_settings(cfg: DictConfig, prefixes: tuple[str, ...]) -> dict[str, float]:
    """``{dotted key: resolved value}`` of the ``auto`` settings under ``prefixes`` (a stage's
    provenance settings), so that a new seed evaluation or new images that change a value make the
    outputs made with the old value stale."""
    return {key: float(resolve(cfg)) for key, resolve in RESOLVERS.items()
            if any(key == p or key.startswith(p + ".") for p in prefixes)
            and rules.is_auto(OmegaConf.select(cfg, key, default=None))}
