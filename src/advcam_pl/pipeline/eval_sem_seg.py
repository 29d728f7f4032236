"""Stage eval_sem_seg: mIoU of the pseudo masks against the ground truth of ``cfg.data.eval_list``.

Reads ``cfg.artifacts.sem_seg_dir/<id>.png`` and the GT masks; writes ``cfg.artifacts.sem_seg_metrics``
(JSON: ``miou``, ``per_class_iou``, confusion matrix, text table). The objective is the mIoU. Done
while the JSON is newer than every pseudo mask and was made from the same mask folder record.
Images recorded as skipped in the mask folder are left out and listed (``skipped_ids``).
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
from advcam_pl.pipeline.provenance import Provenance, folder_identity, settings_of
from advcam_pl.pipeline.skipped import log_skipped, read_skipped, without_skipped
from advcam_pl.viz.stages import show_iou

log = logging.getLogger(__name__)


def provenance(cfg: DictConfig) -> Provenance:
    return Provenance("eval_sem_seg", Path(cfg.artifacts.sem_seg_metrics),
                      settings_of(cfg, ["data.name", "data.eval_list"]),
                      {"sem_seg_dir": folder_identity(cfg.artifacts.sem_seg_dir)}, keep_both="a new cam.name",
                      policy="replace")


def is_done(cfg: DictConfig) -> bool:
    return is_fresh([cfg.artifacts.sem_seg_metrics], Path(cfg.artifacts.sem_seg_dir).glob("*.png")) and \
        provenance(cfg).matches()


def run(cfg: DictConfig) -> dict:
    reader = VOCReader(data_root(cfg), cfg.data.eval_list)
    pred_dir = Path(cfg.artifacts.sem_seg_dir)
    provenance(cfg).begin(cfg)
    skipped = {i: r for i, r in read_skipped(pred_dir).items() if i in set(reader.ids)}
    log_skipped("eval_sem_seg", skipped)
    ids = without_skipped(reader.ids, skipped)
    missing = missing_outputs(pred_dir, ids, ".png")
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(ids)} pseudo masks of data.eval_list={cfg.data.eval_list!r} are "
            f"missing in {pred_dir} (e.g. {missing[0]}.png); make_sem_seg labels data.infer_list, which "
            "must contain the evaluation images"
        )
    confusion = ConfusionMatrix()
    for image_id in ids:
        confusion.update(read_label_png(pred_dir / f"{image_id}.png"), reader.load_mask(image_id))
    iou = confusion.iou
    table = per_class_table(iou, CLASS_NAMES_BG)
    log.info("eval_sem_seg on %s (%d images):\n%s", cfg.data.eval_list, len(ids), table)
    miou = confusion.miou
    result = {
        "miou": miou,
        "per_class_iou": iou_by_class(iou, CLASS_NAMES_BG),
        "num_images": len(ids),
        "skipped_ids": sorted(skipped),
        "split": str(cfg.data.eval_list),
        "confusion": confusion.matrix.tolist(),
        "table": table,
    }
    atomic_save_json(cfg.artifacts.sem_seg_metrics, result)
    with stage_loggers(cfg, "eval_sem_seg") as loggers:
        log_metrics(loggers, {"sem_seg/miou": miou})
        show_iou(cfg, loggers, "eval_sem_seg", result)
    return {"miou": miou, "num_images": len(ids), "skipped_ids": sorted(skipped), "objective": miou}
