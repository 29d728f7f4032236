"""Stage eval_cam: seed mIoU of the CAM/AdvCAM maps, background threshold swept.

Reads ``cfg.artifacts.cam_dir/<id>.npz`` and the ground-truth masks of ``cfg.data.eval_list``;
writes ``cfg.artifacts.cam_metrics`` (best threshold, whole curve, per-class IoU) and logs them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from advcam_pl.evaluation import iou_from_confusion, per_class_table, sweep_thresholds
from advcam_pl.io import atomic_save_json, load_npz
from advcam_pl.pipeline.common import data_root, log_metrics, stage_loggers

log = logging.getLogger(__name__)


def thresholds_from_cfg(cfg: DictConfig) -> list[float]:
    t = cfg.eval_cam.thresholds
    n = int(round((t.stop - t.start) / t.step)) + 1
    return [round(t.start + i * t.step, 6) for i in range(n)]


def load_cam(cam_dir: Path, image_id: str) -> dict[str, np.ndarray]:
    path = cam_dir / f"{image_id}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"CAM file {path} is missing: run stage make_cam for this list first")
    return load_npz(path)


def run(cfg: DictConfig) -> dict:
    from advcam_pl.data.voc import CLASS_NAMES_BG, VOCReader

    reader = VOCReader(data_root(cfg), cfg.data.eval_list)
    cam_dir = Path(cfg.artifacts.cam_dir)

    def items():
        for image_id in reader.ids:
            cam = load_cam(cam_dir, image_id)
            yield cam["high_res"], cam["keys"], reader.load_mask(image_id)

    sweep = sweep_thresholds(items(), thresholds_from_cfg(cfg))
    iou = iou_from_confusion(sweep["confusion"])
    metrics = {
        "cam": cfg.cam.name,
        "split": cfg.data.eval_list,
        "num_images": sweep["num_images"],
        "seed_miou": sweep["best_miou"],
        "best_threshold": sweep["best_threshold"],
        "curve": {"thresholds": sweep["thresholds"], "miou": sweep["miou"]},
        "per_class_iou": dict(zip(CLASS_NAMES_BG, [None if np.isnan(v) else float(v) for v in iou])),
    }
    if cfg.eval_cam.get("crf"):
        from advcam_pl.refine.crf import evaluate_crf_seeds

        crf_conf = evaluate_crf_seeds(
            reader, cam_dir, sweep["best_threshold"], cfg.irn.crf, num_workers=cfg.irn.get("num_workers", 0)
        )
        crf_iou = iou_from_confusion(crf_conf)
        metrics["seed_crf_miou"] = float(np.nanmean(crf_iou))
        metrics["per_class_iou_crf"] = dict(
            zip(CLASS_NAMES_BG, [None if np.isnan(v) else float(v) for v in crf_iou])
        )
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
    return metrics


def is_done(cfg: DictConfig) -> bool:
    # Metrics are cheap to recompute, and a stale JSON would hide new maps: only skip when the
    # metrics are newer than every CAM file they were computed from.
    metrics = Path(cfg.artifacts.cam_metrics)
    cam_dir = Path(cfg.artifacts.cam_dir)
    if not metrics.is_file() or not cam_dir.is_dir():
        return False
    newest_cam = max((p.stat().st_mtime for p in cam_dir.glob("*.npz")), default=0.0)
    return metrics.stat().st_mtime >= newest_cam
