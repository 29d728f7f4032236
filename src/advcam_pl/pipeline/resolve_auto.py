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

from omegaconf import DictConfig

from advcam_pl.pipeline.common import data_root, list_ids
from advcam_pl.refine import auto_settings as rules

log = logging.getLogger(__name__)


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
        log.info("IR-label thresholds: fg %.3f, bg %.3f (auto from the seed's best threshold %.2f in %s)",
                 float(fg), float(bg), best, cfg.artifacts.cam_metrics)
    return float(fg), float(bg)


def random_walk_settings(cfg: DictConfig) -> dict:
    """``cfg.irn.random_walk`` as keyword arguments of ``sem_seg_labels``, ``auto`` ones derived."""
    rw = cfg.irn.random_walk
    bg, exp_times = rw.sem_seg_bg_threshold, rw.exp_times
    if rules.is_auto(bg):
        best = best_seed_threshold(cfg)
        bg = rules.walk_background(best)
        log.info("random walk: background %.3f (auto from the seed's best threshold %.2f in %s)",
                 bg, best, cfg.artifacts.cam_metrics)
    if rules.is_auto(exp_times):
        grid = dataset_grid(cfg)
        exp_times = rules.walk_exp_times(grid)
        log.info("random walk: exp_times %d = %d steps (auto from the median stride-4 grid %gx%g of %s)",
                 exp_times, 2**exp_times, *grid, cfg.data.infer_list)
    return dict(radius=int(rw.radius), beta=float(rw.beta), exp_times=int(exp_times), bg_threshold=float(bg),
                cam_power=float(rw.cam_power), method=str(rw.get("method", "sparse")))


def irn_radius(cfg: DictConfig) -> int:
    """``cfg.irn.module.radius``, ``auto`` derived from the grid size."""
    radius = cfg.irn.module.radius
    if rules.is_auto(radius):
        grid = dataset_grid(cfg)
        radius = rules.irn_radius(grid)
        log.info("IRN pair radius %d (auto from the median stride-4 grid %gx%g of %s)", radius, *grid,
                 cfg.data.infer_list)
    return int(radius)
