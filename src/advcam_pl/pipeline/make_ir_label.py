"""Stage make_ir_label: CAMs → IR labels (confident fg / bg / ignore) via the dense CRF.

Reads ``cfg.artifacts.cam_dir/<id>.npz`` (``high_res``, ``keys``) and the images of
``cfg.data.infer_list``; writes ``cfg.artifacts.ir_label_dir/<id>.png`` (VOC palette: 0 background,
1–20 classes, 255 ignore). Thresholds ``cfg.irn.ir_label.{fg_threshold, bg_threshold}``, CRF
``cfg.irn.crf``, ``cfg.irn.num_workers`` processes. Images whose PNG exists are skipped.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from advcam_pl.pipeline.common import (
    data_root,
    list_ids,
    log_metrics,
    missing_outputs,
    require_cam_files,
    stage_loggers,
)
from advcam_pl.refine.crf import parallel_map
from advcam_pl.refine.ir_label import write_ir_label

log = logging.getLogger(__name__)


def is_done(cfg: DictConfig) -> bool:
    out_dir = Path(cfg.artifacts.ir_label_dir)
    return out_dir.is_dir() and not missing_outputs(out_dir, list_ids(cfg, cfg.data.infer_list), ".png")


def run(cfg: DictConfig) -> dict:
    root = data_root(cfg)
    ids = list_ids(cfg, cfg.data.infer_list)
    cam_dir, out_dir = Path(cfg.artifacts.cam_dir), Path(cfg.artifacts.ir_label_dir)
    todo = missing_outputs(out_dir, ids, ".png")
    require_cam_files(cam_dir, todo)
    log.info("make_ir_label: %d of %d images to label (%d done)", len(todo), len(ids), len(ids) - len(todo))
    out_dir.mkdir(parents=True, exist_ok=True)
    job = partial(
        write_ir_label,
        root=str(root),
        split=cfg.data.infer_list,
        cam_dir=str(cam_dir),
        out_dir=str(out_dir),
        fg_threshold=float(cfg.irn.ir_label.fg_threshold),
        bg_threshold=float(cfg.irn.ir_label.bg_threshold),
        crf=OmegaConf.to_container(cfg.irn.crf, resolve=True),
    )
    counts = np.zeros(3, dtype=np.int64)
    for c in parallel_map(job, todo, num_workers=int(cfg.irn.num_workers), desc="make_ir_label"):
        counts += c
    metrics: dict = {"num_images": len(ids), "num_written": len(todo)}
    if counts.sum():
        fractions = counts / counts.sum()
        metrics.update(fg_fraction=float(fractions[0]), bg_fraction=float(fractions[1]),
                       ignore_fraction=float(fractions[2]))
    with stage_loggers(cfg, "make_ir_label") as loggers:
        log_metrics(loggers, {f"ir_label/{k}": v for k, v in metrics.items()})
    log.info("make_ir_label: %s", metrics)
    return metrics
