"""Stage eval_walk_ceiling: the random walk from the same seeds with ground-truth boundaries.

A reference for make_sem_seg's masks (the walk's ceiling: a perfect IRN). Reads
``cfg.artifacts.cam_dir`` (stride-4 ``cam``) and the GT masks of ``cfg.data.eval_list``; walks with
make_sem_seg's settings (``cfg.irn.random_walk``, ``auto`` ones resolved the same way) on
:func:`~advcam_pl.refine.gt_boundary.gt_boundary_map` instead of IRN's boundaries; writes
``cfg.artifacts.walk_ceiling_metrics`` (``miou``, ``num_images``, ``split``, ``settings``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from advcam_pl.advcam.cam_io import cam_path, load_cam
from advcam_pl.data.voc import VOCReader
from advcam_pl.evaluation import ConfusionMatrix
from advcam_pl.io import atomic_save_json
from advcam_pl.pipeline.common import data_root, is_fresh, log_metrics, require_cam_files, stage_loggers
from advcam_pl.pipeline.resolve_auto import random_walk_settings
from advcam_pl.refine.gt_boundary import gt_boundary_map
from advcam_pl.refine.random_walk import sem_seg_labels

log = logging.getLogger(__name__)


def is_done(cfg: DictConfig) -> bool:
    # The walk settings may be `auto` (from eval_cam's metrics): those count as an input too.
    inputs = [*Path(cfg.artifacts.cam_dir).glob("*.npz"), cfg.artifacts.cam_metrics]
    return is_fresh([cfg.artifacts.walk_ceiling_metrics], [p for p in inputs if Path(p).exists()])


def run(cfg: DictConfig) -> dict:
    reader = VOCReader(data_root(cfg), cfg.data.eval_list)
    cam_dir = Path(cfg.artifacts.cam_dir)
    require_cam_files(cam_dir, reader.ids)
    settings = random_walk_settings(cfg)
    confusion = ConfusionMatrix()
    for image_id in reader.ids:
        mask = reader.load_mask(image_id)
        cam = load_cam(cam_path(cam_dir, image_id))
        edge = torch.from_numpy(gt_boundary_map(mask))
        if tuple(edge.shape) != tuple(cam["cam"].shape[-2:]):
            raise ValueError(f"{cam_path(cam_dir, image_id)}: stride-4 maps {tuple(cam['cam'].shape[-2:])} do not "
                             f"match the grid {tuple(edge.shape)} of its {mask.shape} mask")
        confusion.update(sem_seg_labels(cam["cam"], cam["keys"], edge, mask.shape, **settings), mask)
    metrics = {"miou": confusion.miou, "num_images": len(reader.ids), "split": str(cfg.data.eval_list),
               "settings": settings}
    atomic_save_json(cfg.artifacts.walk_ceiling_metrics, metrics)
    log.info("walk with ground-truth boundaries from the %s seeds on %s: mIoU %.1f", cfg.cam.name,
             cfg.data.eval_list, 100 * metrics["miou"])
    with stage_loggers(cfg, "eval_walk_ceiling") as loggers:
        log_metrics(loggers, {"walk_ceiling/miou": metrics["miou"]})
    return {"miou": metrics["miou"], "num_images": len(reader.ids), "objective": metrics["miou"]}
