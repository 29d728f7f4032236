"""Stage eval_cam: seed mIoU of the CAM/AdvCAM maps, background threshold swept.

Reads ``cfg.artifacts.cam_dir/<id>.npz`` and the ground-truth masks of ``cfg.data.eval_list``;
writes ``cfg.artifacts.cam_metrics`` (best threshold, whole curve, per-class IoU) and logs them.
With ``cfg.eval_cam.crf`` also the seed + dense CRF at the best threshold (``cfg.irn.crf``,
``cfg.irn.num_workers`` processes). Images recorded as skipped in the CAM folder are left out and
listed (``skipped_ids``). Done while the JSON is newer than the maps and was made from the same CAM
folder record and settings (otherwise it is computed again); a skipped run returns that JSON
(:func:`recorded_metrics`), so a sweeper still reads its ``objective``, the seed mIoU.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from advcam_pl.advcam.cam_io import CAM_SUFFIX, cam_path, load_cam
from advcam_pl.data.voc import CLASS_NAMES_BG, VOCReader
from advcam_pl.evaluation import iou_by_class, iou_from_confusion, per_class_table, sweep_thresholds
from advcam_pl.io import atomic_save_json
from advcam_pl.pipeline.common import data_root, is_fresh, log_metrics, stage_loggers
from advcam_pl.pipeline.provenance import Provenance, folder_identity, settings_of
from advcam_pl.pipeline.skipped import log_skipped, read_skipped, without_skipped
from advcam_pl.viz.stages import show_eval_cam

log = logging.getLogger(__name__)


def provenance(cfg: DictConfig) -> Provenance:
    keys = ["eval_cam", "data.name", "data.eval_list"] + (["irn.crf"] if cfg.eval_cam.get("crf") else [])
    return Provenance("eval_cam", Path(cfg.artifacts.cam_metrics), settings_of(cfg, keys),
                      {"cam_dir": folder_identity(cfg.artifacts.cam_dir)}, keep_both="a new cam.name",
                      policy="replace")


def thresholds_from_cfg(cfg: DictConfig) -> list[float]:
    t = cfg.eval_cam.thresholds
    n = int(round((t.stop - t.start) / t.step)) + 1
    return [round(t.start + i * t.step, 6) for i in range(n)]


def seed_items(reader: VOCReader, cam_dir: Path, with_image: bool = False,
               ids: list[str] | None = None) -> Iterator[tuple]:
    """``(high_res, keys, gt)`` per image of ``ids`` (default: the reader's list; ``(image, high_res,
    keys, gt)`` with ``with_image``, for the CRF)."""
    for image_id in reader.ids if ids is None else ids:
        cam = load_cam(cam_path(cam_dir, image_id))
        arrays = (cam["high_res"], cam["keys"], reader.load_mask(image_id))
        yield (reader.load_image(image_id), *arrays) if with_image else arrays


def run(cfg: DictConfig) -> dict:
    reader = VOCReader(data_root(cfg), cfg.data.eval_list)
    cam_dir = Path(cfg.artifacts.cam_dir)
    provenance(cfg).begin(cfg)
    skipped = {i: r for i, r in read_skipped(cam_dir).items() if i in set(reader.ids)}
    log_skipped("eval_cam", skipped)
    ids = without_skipped(reader.ids, skipped)

    sweep = sweep_thresholds(seed_items(reader, cam_dir, ids=ids), thresholds_from_cfg(cfg))
    iou = iou_from_confusion(sweep["confusion"])
    metrics = {
        "cam": cfg.cam.name,
        "split": cfg.data.eval_list,
        "num_images": sweep["num_images"],
        "seed_miou": sweep["best_miou"],
        "best_threshold": sweep["best_threshold"],
        "curve": {"thresholds": sweep["thresholds"], "miou": sweep["miou"]},
        "per_class_iou": iou_by_class(iou, CLASS_NAMES_BG),
        "skipped_ids": sorted(skipped),
    }
    if cfg.eval_cam.get("crf"):
        from advcam_pl.refine.crf import crf_seed_confusion

        crf_conf = crf_seed_confusion(
            seed_items(reader, cam_dir, with_image=True, ids=ids), sweep["best_threshold"],
            num_workers=int(cfg.irn.get("num_workers", 0)), total=len(ids),
            **OmegaConf.to_container(cfg.irn.crf, resolve=True),
        )  # fmt: skip
        crf_iou = iou_from_confusion(crf_conf)
        metrics["seed_crf_miou"] = float(np.nanmean(crf_iou))
        metrics["per_class_iou_crf"] = iou_by_class(crf_iou, CLASS_NAMES_BG)
    metrics["objective"] = metrics["seed_miou"]
    atomic_save_json(cfg.artifacts.cam_metrics, metrics)

    log.info("seed mIoU of %s on %s (threshold %.2f):\n%s", cfg.cam.name, cfg.data.eval_list,
             sweep["best_threshold"], per_class_table(iou, CLASS_NAMES_BG))
    with stage_loggers(cfg, "eval_cam") as loggers:
        # The curve: one logged point per threshold (step = its index), then the summary.
        for i, (t, m) in enumerate(zip(sweep["thresholds"], sweep["miou"])):
            log_metrics(loggers, {f"eval_cam/{cfg.cam.name}/miou_at_threshold": m,
                                  f"eval_cam/{cfg.cam.name}/threshold": t}, step=i)
        log_metrics(loggers, {f"eval_cam/{cfg.cam.name}/{k}": v for k, v in metrics.items()
                              if k in ("seed_miou", "best_threshold", "seed_crf_miou")},
                    step=len(sweep["thresholds"]))
        show_eval_cam(cfg, loggers, metrics, ids)
    return metrics


def recorded_metrics(cfg: DictConfig) -> dict:
    """The metrics a finished run wrote (``cfg.artifacts.cam_metrics``): what a skipped run returns."""
    return json.loads(Path(cfg.artifacts.cam_metrics).read_text())


def is_done(cfg: DictConfig) -> bool:
    return is_fresh([cfg.artifacts.cam_metrics], Path(cfg.artifacts.cam_dir).glob(f"*{CAM_SUFFIX}")) and \
        provenance(cfg).matches()
