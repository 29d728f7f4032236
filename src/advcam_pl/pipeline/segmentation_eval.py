"""What the segmentation evaluations (``eval_seg``: DeepLab-v2, ``eval_semi``: CCT) share: predict val and
test with a trained network, score val, write the metrics and the VOC evaluation-server export.

One :class:`EvalTarget` names the checkpoint, the outputs and the eval settings; under its
``pred_dir``::

    val/<id>.png                                   final val predictions (after CRF when enabled)
    val_no_crf/<id>.png                            the same before CRF (only when the CRF is on)
    results/VOC2012/Segmentation/<comp>_test_cls/<id>.png   test predictions, server layout
    results_<comp>_test.tar.gz                     the archive to upload
    provenance.json                                which checkpoint (SHA-256) + eval settings made them

and its ``metrics`` JSON (mIoU with and without CRF, per-class IoU, the Table A1 row, the per-class
table). Every PNG is written atomically; a re-run skips images whose PNGs are complete, unless the
checkpoint or the eval settings changed (then the old predictions are deleted first:
:mod:`advcam_pl.pipeline.provenance`, policy ``replace``).

The network's ``predict_step`` returns the softmax ``[1, C, H, W]`` of its test-time protocol
(multi-scale, flip, fusion); :class:`~advcam_pl.training.callbacks.SegmentationWriter` applies the
dense CRF (``settings.crf``) and writes the argmax.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from advcam_pl.data.segmentation import SegmentationDataModule
from advcam_pl.data.voc import CLASS_NAMES_BG, LIST_DIR, VOCReader, read_mask_file
from advcam_pl.evaluation import ConfusionMatrix, iou_by_class, per_class_table
from advcam_pl.evaluation.export import check_submission, make_archive, server_dir, wide_iou_table
from advcam_pl.io import atomic_save_json, png_is_complete
from advcam_pl.pipeline.common import build_trainer, data_root, is_fresh, log_metrics, stage_loggers
from advcam_pl.pipeline.provenance import Provenance, file_identity, flatten, settings_of
from advcam_pl.training.callbacks import SegmentationWriter
from advcam_pl.viz.stages import show_iou, show_label_maps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalTarget:
    """One evaluation: ``stage`` (log and logger name), the ``ckpt`` it evaluates, where predictions
    (``pred_dir``) and ``metrics`` go, and the ``settings`` block (``crf`` with ``enabled``,
    ``crf_workers``, ``export_test``, ``competition``, and the network's test-time keys)."""

    stage: str
    ckpt: Path
    pred_dir: Path
    metrics: Path
    settings: DictConfig


def crf_params(settings: DictConfig) -> dict | None:
    """Keyword arguments of :func:`advcam_pl.refine.crf.crf_inference_prob`, or None (CRF off)."""
    crf = OmegaConf.to_container(settings.crf, resolve=True)
    if not crf.pop("enabled", True):
        return None
    return crf


def pred_dirs(target: EvalTarget) -> dict[str, Path]:
    dirs = {"val": target.pred_dir / "val"}
    if crf_params(target.settings) is not None:
        dirs["val_no_crf"] = target.pred_dir / "val_no_crf"
    if target.settings.export_test:
        dirs["test"] = server_dir(target.pred_dir, target.settings.competition)
    return dirs


def export_ids(cfg: DictConfig, settings: DictConfig, root: Path | None = None) -> list[str] | None:
    """Ids of ``cfg.data.test_list`` when the export is on and the list exists, else None."""
    if not settings.export_test or not cfg.data.get("test_list"):
        return None
    root = Path(cfg.data.root) if root is None else root
    if not (root / LIST_DIR / f"{cfg.data.test_list}.txt").is_file():
        return None
    return VOCReader(root, cfg.data.test_list).ids


def provenance(cfg: DictConfig, target: EvalTarget) -> Provenance:
    """The predictions are the checkpoint's (by content) under the eval settings; an evaluation,
    so other settings replace them rather than being refused."""
    settings = {**settings_of(cfg, ["data.name", "data.val_list", "data.test_list"]),
                **flatten(OmegaConf.to_container(target.settings, resolve=True), "eval", ignore=["eval.crf_workers"])}
    return Provenance(target.stage, target.pred_dir, settings, {"ckpt": file_identity(target.ckpt)},
                      keep_both="another prediction folder", policy="replace",
                      patterns=("val/*.png", "val_no_crf/*.png", "results/**/*.png", "results_*_test.tar.gz"),
                      companions=[target.metrics])


def fingerprint(cfg: DictConfig, target: EvalTarget) -> str:
    """The digest of the checkpoint's SHA-256 and the eval settings (kept in the metrics JSON)."""
    return provenance(cfg, target).digest


def is_done(cfg: DictConfig, target: EvalTarget) -> bool:
    """The metrics JSON is newer than the checkpoint and made with these settings, and every test
    PNG of the export exists."""
    if not is_fresh([target.metrics], [target.ckpt]):
        return False
    try:
        metrics = json.loads(target.metrics.read_text())
    except (OSError, ValueError):
        return False
    if metrics.get("fingerprint") != fingerprint(cfg, target) or not provenance(cfg, target).matches():
        return False
    ids = export_ids(cfg, target.settings)
    if ids is None:
        return True
    folder = server_dir(target.pred_dir, target.settings.competition)
    return all(png_is_complete(folder / f"{i}.png") for i in ids)


def predict_split(trainer: pl.Trainer, model: pl.LightningModule, writer: SegmentationWriter, root: Path,
                  split: str, targets: Callable[[str], dict[str, Path]], num_workers: int,
                  skip_bad: bool) -> int:
    """Predict every id of ``split`` whose target PNGs are not all complete; returns how many."""
    datamodule = SegmentationDataModule(
        root, val_list=split, num_workers=num_workers, skip_bad=skip_bad, predict_list=split,
        predict_exclude=lambda i: all(png_is_complete(p) for p in targets(i).values()),
    )  # fmt: skip
    datamodule.setup("predict")
    todo = len(datamodule.predict_set)
    if todo:
        log.info("predicting %d images of %s", todo, split)
        writer.targets = targets
        trainer.predict(model, datamodule=datamodule, return_predictions=False)
    else:
        log.info("every prediction of %s exists, nothing to do", split)
    return todo


def score(reader: VOCReader, pred_dir: Path, skip_missing: bool = False) -> tuple[ConfusionMatrix, int]:
    """Confusion of the PNGs in ``pred_dir`` against the reader's GT masks, and how many images it
    counts. A missing PNG is an error, unless ``skip_missing`` (``data.skip_bad`` dropped the image)."""
    conf, n = ConfusionMatrix(len(CLASS_NAMES_BG)), 0
    for image_id in reader.ids:
        path = pred_dir / f"{image_id}.png"
        if not path.is_file():
            if skip_missing:
                continue
            raise FileNotFoundError(f"prediction {path} is missing")
        conf.update(read_mask_file(path), reader.load_mask(image_id))
        n += 1
    return conf, n


def evaluate(cfg: DictConfig, target: EvalTarget, model: pl.LightningModule, row: str, info: dict,
             paper_val: float) -> dict:
    """Predict val (and test, for the export), score val and write ``target.metrics``; returns the
    metrics. ``row`` labels the Table A1 row (" + CRF" appended when the CRF is on), ``info`` (what
    was evaluated: network, seeds, test-time settings) goes into the JSON as it is, ``paper_val`` is
    the paper's val mIoU (%) for the log line."""
    root = data_root(cfg)
    settings = target.settings
    record = provenance(cfg, target)
    record.begin(cfg)  # predictions of another checkpoint or other settings are deleted first
    current = record.digest
    dirs = pred_dirs(target)
    crf = crf_params(settings)
    writer = SegmentationWriter(crf, settings.get("crf_workers", 0))
    trainer = build_trainer(cfg, (), [writer])

    def val_targets(image_id: str) -> dict[str, Path]:
        targets = {"final": dirs["val"] / f"{image_id}.png"}
        if "val_no_crf" in dirs:
            targets["no_crf"] = dirs["val_no_crf"] / f"{image_id}.png"
        return targets

    def test_targets(image_id: str) -> dict[str, Path]:
        return {"final": dirs["test"] / f"{image_id}.png"}

    skip_bad, workers = bool(cfg.data.skip_bad), int(cfg.data.num_workers)
    predict_split(trainer, model, writer, root, cfg.data.val_list, val_targets, workers, skip_bad)
    ids = export_ids(cfg, settings, root)
    if ids is not None:
        predict_split(trainer, model, writer, root, cfg.data.test_list, test_targets, workers, skip_bad)
    elif settings.export_test:
        log.warning("%s: no %s list under %s, so no test-server export (put VOC2012 test images into "
                    "JPEGImages and test.txt into ImageSets/Segmentation)", target.stage, cfg.data.test_list,
                    root / LIST_DIR)

    metrics: dict = {**info, "split": cfg.data.val_list, "crf": crf}
    if not trainer.is_global_zero:
        return metrics
    reader = VOCReader(root, cfg.data.val_list)
    conf, n_scored = score(reader, dirs["val"], skip_missing=skip_bad)
    iou = conf.iou
    metrics.update(num_images=n_scored, miou=float(np.nanmean(iou)), per_class_iou=iou_by_class(iou, CLASS_NAMES_BG))
    rows = {row + (" + CRF" if crf else ""): iou}
    if "val_no_crf" in dirs:
        iou_no_crf = score(reader, dirs["val_no_crf"], skip_missing=skip_bad)[0].iou
        metrics.update(miou_no_crf=float(np.nanmean(iou_no_crf)), per_class_iou_no_crf=iou_by_class(iou_no_crf, CLASS_NAMES_BG))
        rows = {row: iou_no_crf, **rows}
    if ids is not None:
        check_submission(target.pred_dir, ids, settings.competition)
        archive = make_archive(target.pred_dir, settings.competition)
        metrics.update(test_split=cfg.data.test_list, num_test_images=len(ids),
                       competition=str(settings.competition), test_archive=str(archive))
    metrics["table_a1"] = wide_iou_table(rows)
    metrics["table"] = per_class_table(iou, CLASS_NAMES_BG)
    metrics["fingerprint"] = current
    metrics["objective"] = metrics["miou"]
    atomic_save_json(target.metrics, metrics)

    log.info("%s: %s mIoU on %s = %.2f (paper, VOC val: %.1f)\n%s\n\n%s", target.stage, row, cfg.data.val_list,
             100 * metrics["miou"], paper_val, metrics["table_a1"], metrics["table"])
    if ids is not None:
        log.info("%s: test predictions for the VOC server in %s", target.stage, metrics["test_archive"])
    with stage_loggers(cfg, target.stage) as loggers:
        log_metrics(loggers, {f"{target.stage}/{k}": v for k, v in metrics.items()
                              if k in ("miou", "miou_no_crf", "num_images")})
        log_metrics(loggers, {f"{target.stage}/iou/{n}": v for n, v in metrics["per_class_iou"].items()
                              if v is not None})
        show_label_maps(cfg, loggers, target.stage, "prediction", dirs["val"], cfg.data.val_list)
        show_iou(cfg, loggers, target.stage, metrics)
    return metrics
