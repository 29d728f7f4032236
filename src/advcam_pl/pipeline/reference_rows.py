"""Reference rows of the demo table, so a weak input can be told from a broken stage.

- :func:`all_background_miou`: predicting background everywhere (the floor of every column);
- :func:`gt_seg_overrides`: the segmentation network trained and evaluated on the ground-truth
  masks of the same images (its ceiling), with its own file names;
- the walk's ceiling (ground-truth boundaries) is the stage ``eval_walk_ceiling``, a column of the
  seed methods' rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from advcam_pl.data.voc import VOCReader
from advcam_pl.evaluation import ConfusionMatrix
from advcam_pl.pipeline.common import data_root
from advcam_pl.pipeline.report import Row, read_metrics


def all_background_miou(root: str | Path, split: str) -> float:
    """mIoU of an all-background prediction on the ground truth of list ``split`` under ``root``."""
    reader = VOCReader(root, split)
    confusion = ConfusionMatrix()
    for image_id in reader.ids:
        mask = reader.load_mask(image_id)
        confusion.update(np.zeros_like(mask), mask)
    return confusion.miou


def gt_seg_overrides(model_name: str = "${model.name}") -> list[str]:
    """Overrides for train_seg / eval_seg on the dataset's own masks (``model.train.label_dir=gt``),
    writing ``seg_<model>_gt`` files beside the pseudo-mask ones."""
    work = "${paths.work_dir}"
    return [
        "model.train.label_dir=gt",
        f"artifacts.seg_ckpt={work}/checkpoints/seg_{model_name}_gt.ckpt",
        f"artifacts.seg_pred_dir={work}/seg_pred_{model_name}_gt",
        f"artifacts.seg_metrics={work}/metrics/eval_seg_{model_name}_gt.json",
    ]


def reference_table_rows(base: DictConfig, gt_seg_cfg: DictConfig | None = None) -> list[Row]:
    """The demo table's reference rows (columns of :data:`~advcam_pl.pipeline.report.SEED_METHOD_COLUMNS`):
    the segmentation network on GT masks (``gt_seg_cfg``'s eval_seg metrics, if given) and the
    all-background score on ``data.eval_list`` (seed, +CRF, mask, GT-edge walk) and ``data.val_list``."""
    rows: list[Row] = []
    if gt_seg_cfg is not None:
        rows.append(("seg on GT masks", [None, None, None, None, read_metrics(gt_seg_cfg.artifacts.seg_metrics).get("miou")]))
    root = data_root(base)
    on_eval, on_val = all_background_miou(root, base.data.eval_list), all_background_miou(root, base.data.val_list)
    rows.append(("all background", [on_eval, on_eval, on_eval, on_eval, on_val]))
    return rows
