"""Stage make_ir_label: CAMs → IR labels (confident fg / bg / ignore) via the dense CRF.

Reads ``cfg.artifacts.cam_dir/<id>.npz`` (``high_res``, ``keys``) and the images of
``cfg.data.infer_list``; writes ``cfg.artifacts.ir_label_dir/<id>.png`` (VOC palette: 0 background,
1–20 classes, 255 ignore). Thresholds ``cfg.irn.ir_label.{fg_threshold, bg_threshold}`` (numbers, or
``auto``: derived from eval_cam's best threshold, :mod:`advcam_pl.pipeline.resolve_auto`), CRF
``cfg.irn.crf``, ``cfg.irn.num_workers`` processes. Images whose PNG is complete are skipped (a
truncated one is made again). Images recorded as skipped in the CAM folder (and, with
``data.skip_bad``, unreadable ones) are left out and recorded in ``ir_label_dir/skipped.json``.
The labels are recorded as made from the CAM folder's record and these settings
(:mod:`advcam_pl.pipeline.provenance`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from advcam_pl.advcam.cam_io import cam_path, load_cam
from advcam_pl.data.voc import VOCReader
from advcam_pl.pipeline.common import (
    all_written,
    data_root,
    images_to_do,
    list_ids,
    log_metrics,
    require_cam_files,
    stage_loggers,
)
from advcam_pl.pipeline.provenance import Provenance, folder_identity, settings_of
from advcam_pl.pipeline.resolve_auto import ir_label_thresholds, resolved_settings
from advcam_pl.pipeline.skipped import read_skipped, without_skipped
from advcam_pl.refine.crf import parallel_map
from advcam_pl.refine.ir_label import write_ir_label
from advcam_pl.viz.stages import show_label_maps

log = logging.getLogger(__name__)

SETTINGS = ("irn.ir_label", "irn.crf", "data.name")  # what determines a label, besides its CAM


def provenance(cfg: DictConfig) -> Provenance:
    settings = {**settings_of(cfg, SETTINGS), **resolved_settings(cfg, SETTINGS)}
    return Provenance("make_ir_label", Path(cfg.artifacts.ir_label_dir), settings,
                      {"cam_dir": folder_identity(cfg.artifacts.cam_dir)}, keep_both="a new cam.name",
                      patterns=("*.png",))


def skipped_ids(cfg: DictConfig) -> dict[str, str]:
    """The images left out: skipped by make_cam, or found unreadable here earlier."""
    return {**read_skipped(cfg.artifacts.cam_dir), **read_skipped(cfg.artifacts.ir_label_dir)}


def is_done(cfg: DictConfig) -> bool:
    ids = without_skipped(list_ids(cfg, cfg.data.infer_list), skipped_ids(cfg))
    return all_written(cfg.artifacts.ir_label_dir, ids, ".png") and provenance(cfg).matches()


def label_jobs(reader: VOCReader, ids: Sequence[str], cam_dir: Path, out_dir: Path) -> Iterator[tuple]:
    """``(out_path, image, high_res, keys)`` per id, read here so the CRF workers get plain arrays."""
    for image_id in ids:
        cam = load_cam(cam_path(cam_dir, image_id))
        yield out_dir / f"{image_id}.png", reader.load_image(image_id), cam["high_res"], cam["keys"]


def run(cfg: DictConfig) -> dict:
    reader = VOCReader(data_root(cfg), cfg.data.infer_list)
    cam_dir, out_dir = Path(cfg.artifacts.cam_dir), Path(cfg.artifacts.ir_label_dir)
    provenance(cfg).begin(cfg)
    todo, skipped = images_to_do("make_ir_label", reader, out_dir, ".png", cam_dir, bool(cfg.data.skip_bad))
    require_cam_files(cam_dir, todo)
    ids = without_skipped(reader.ids, skipped)
    log.info("make_ir_label: %d of %d images to label (%d done)", len(todo), len(ids), len(ids) - len(todo))
    out_dir.mkdir(parents=True, exist_ok=True)
    fg_threshold, bg_threshold = ir_label_thresholds(cfg)
    job = partial(
        write_ir_label,
        fg_threshold=fg_threshold,
        bg_threshold=bg_threshold,
        crf=OmegaConf.to_container(cfg.irn.crf, resolve=True),
    )
    counts = np.zeros(3, dtype=np.int64)
    for c in parallel_map(job, label_jobs(reader, todo, cam_dir, out_dir), num_workers=int(cfg.irn.num_workers),
                          desc="make_ir_label", total=len(todo), unpack=True):
        counts += c
    metrics: dict = {"num_images": len(reader.ids), "num_written": len(todo), "skipped_ids": sorted(skipped),
                     "fg_threshold": fg_threshold, "bg_threshold": bg_threshold}
    if counts.sum():
        fractions = counts / counts.sum()
        metrics.update(fg_fraction=float(fractions[0]), bg_fraction=float(fractions[1]),
                       ignore_fraction=float(fractions[2]))
    with stage_loggers(cfg, "make_ir_label") as loggers:
        log_metrics(loggers, {f"ir_label/{k}": v for k, v in metrics.items()})
        show_label_maps(cfg, loggers, "make_ir_label", "ir_label", out_dir, cfg.data.eval_list)
    log.info("make_ir_label: %s", metrics)
    return metrics
