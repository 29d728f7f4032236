"""Stage eval_walk_ceiling: the random walk from the same seeds with ground-truth boundaries.

A reference for make_sem_seg's masks (the walk's ceiling: what a perfect IRN would give). Reads
``cfg.artifacts.cam_dir`` (stride-4 ``cam``) and the GT masks of ``cfg.data.eval_list``; walks with
make_sem_seg's settings (``cfg.irn.random_walk``, ``auto`` ones resolved the same way) on
:func:`~advcam_pl.refine.gt_boundary.gt_boundary_map` instead of IRN's boundary map; writes
``cfg.artifacts.walk_ceiling_metrics`` (``miou``, ``per_class_iou``, ``settings``). Done while the
JSON is newer than every CAM file and was made from the same CAM folder record and settings. Images
recorded as skipped in the CAM folder are left out and listed (``skipped_ids``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from advcam_pl.advcam.cam_io import CAM_SUFFIX, cam_path, load_cam
from advcam_pl.data.voc import CLASS_NAMES_BG, VOCReader
from advcam_pl.evaluation import ConfusionMatrix, iou_by_class
from advcam_pl.io import atomic_save_json
from advcam_pl.pipeline.common import data_root, is_fresh, log_metrics, require_cam_files, stage_loggers
from advcam_pl.pipeline.provenance import Provenance, folder_identity, settings_of
from advcam_pl.pipeline.resolve_auto import random_walk_settings, resolved_settings
from advcam_pl.pipeline.skipped import log_skipped, read_skipped, without_skipped
from advcam_pl.refine.gt_boundary import gt_boundary_map
from advcam_pl.refine.random_walk import sem_seg_labels

log = logging.getLogger(__name__)

SETTINGS = ("irn.random_walk", "data.name", "data.eval_list")


def provenance(cfg: DictConfig) -> Provenance:
    settings = {**settings_of(cfg, SETTINGS), **resolved_settings(cfg, SETTINGS)}
    return Provenance("eval_walk_ceiling", Path(cfg.artifacts.walk_ceiling_metrics), settings,
                      {"cam_dir": folder_identity(cfg.artifacts.cam_dir)}, keep_both="a new cam.name",
                      policy="replace")


def is_done(cfg: DictConfig) -> bool:
    cams = Path(cfg.artifacts.cam_dir).glob(f"*{CAM_SUFFIX}")
    return is_fresh([cfg.artifacts.walk_ceiling_metrics], cams) and provenance(cfg).matches()


def run(cfg: DictConfig) -> dict:
    reader = VOCReader(data_root(cfg), cfg.data.eval_list)
    cam_dir = Path(cfg.artifacts.cam_dir)
    provenance(cfg).begin(cfg)
    skipped = {i: r for i, r in read_skipped(cam_dir).items() if i in set(reader.ids)}
    log_skipped("eval_walk_ceiling", skipped)
    ids = without_skipped(reader.ids, skipped)
    require_cam_files(cam_dir, ids)
    settings = random_walk_settings(cfg)
    confusion = ConfusionMatrix()
    for image_id in ids:
        mask = reader.load_mask(image_id)
        cam = load_cam(cam_path(cam_dir, image_id))
        edge = torch.from_numpy(gt_boundary_map(mask))
        if tuple(edge.shape) != tuple(cam["cam"].shape[-2:]):
            raise ValueError(f"{cam_path(cam_dir, image_id)}: stride-4 maps {tuple(cam['cam'].shape[-2:])} do not "
                             f"match the grid {tuple(edge.shape)} of its {mask.shape} mask")
        confusion.update(sem_seg_labels(cam["cam"], cam["keys"], edge, mask.shape, **settings), mask)
    miou = confusion.miou
    atomic_save_json(cfg.artifacts.walk_ceiling_metrics, {
        "miou": miou, "per_class_iou": iou_by_class(confusion.iou, CLASS_NAMES_BG), "num_images": len(ids),
        "split": str(cfg.data.eval_list), "settings": settings, "skipped_ids": sorted(skipped)})
    log.info("walk with ground-truth boundaries from the %s seeds on %s (%d images): mIoU %.1f", cfg.cam.name,
             cfg.data.eval_list, len(ids), 100 * miou)
    with stage_loggers(cfg, "eval_walk_ceiling") as loggers:
        log_metrics(loggers, {"walk_ceiling/miou": miou})
    return {"miou": miou, "num_images": len(ids), "objective": miou}
