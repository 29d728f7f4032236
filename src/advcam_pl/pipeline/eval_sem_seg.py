"""Stage eval_sem_seg: mIoU of the pseudo masks against the ground truth of ``cfg.data.eval_list``.

Reads ``cfg.artifacts.sem_seg_dir/<id>.png`` and the GT masks; writes ``cfg.artifacts.sem_seg_metrics``
(JSON: ``miou``, ``per_class_iou``, confusion matrix, text table). The objective is the mIoU. Done
while the JSON is newer than every pseudo mask.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from advcam_pl.data.affinity import read_label_png
from advcam_pl.data.voc import CLASS_NAMES_BG, VOCReader
from advcam_pl.evaluation import ConfusionMatrix, iou_by_class, per_class_table
from advcam_pl.io import atomic_save_json
from advcam_pl.pipeline.common import data_root, is_fresh, log_metrics, missing_outputs, stage_loggers

log = logging.getLogger(__name__)


def is_done(cfg: DictConfig) -> bool:
    return is_fresh([cfg.artifacts.sem_seg_metrics], Path(cfg.artifacts.sem_seg_dir).glob("*.png"))


def run(cfg: DictConfig) -> dict:
    reader = VOCReader(data_root(cfg), cfg.data.eval_list)
    pred_dir = Path(cfg.artifacts.sem_seg_dir)
    missing = missing_outputs(pred_dir, reader.ids, ".png")
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(reader.ids)} pseudo masks of data.eval_list={cfg.data.eval_list!r} are "
            f"missing in {pred_dir} (e.g. {missing[0]}.png); make_sem_seg labels data.infer_list, which "
            "must contain the evaluation images"
        )
    confusion = ConfusionMatrix()
    for image_id in reader.ids:
        confusion.update(read_label_png(pred_dir / f"{image_id}.png"), reader.load_mask(image_id))
    iou = confusion.iou
    table = per_class_table(iou, CLASS_NAMES_BG)
    log.info("eval_sem_seg on %s (%d images):\n%s", cfg.data.eval_list, len(reader.ids), table)
    miou = confusion.miou
    result = {
        "miou": miou,
        "per_class_iou": iou_by_class(iou, CLASS_NAMES_BG),
        "num_images": len(reader.ids),
        "split": str(cfg.data.eval_list),
        "confusion": confusion.matrix.tolist(),
        "table": table,
    }
    atomic_save_json(cfg.artifacts.sem_seg_metrics, result)
    with stage_loggers(cfg, "eval_sem_seg") as loggers:
        log_metrics(loggers, {"sem_seg/miou": miou})
    return {"miou": miou, "num_images": len(reader.ids), "objective": miou}
