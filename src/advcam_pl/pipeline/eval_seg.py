"""Stage eval_seg: the segmentation network's val mIoU (multi-scale + flip, max fusion, dense CRF)
and the VOC evaluation-server export of its test predictions.

Reads ``cfg.artifacts.seg_ckpt``; writes, under ``cfg.artifacts.seg_pred_dir``::

    val/<id>.png                                   final val predictions (after CRF when enabled)
    val_no_crf/<id>.png                            the same before CRF (only when the CRF is on)
    results/VOC2012/Segmentation/<comp>_test_cls/<id>.png   test predictions, server layout
    results_<comp>_test.tar.gz                     the archive to upload
    provenance.json                                which checkpoint (SHA-256) + eval settings made them

and ``cfg.artifacts.seg_metrics`` (mIoU with and without CRF, per-class IoU, the tables). Every PNG is
written atomically; a re-run skips images whose PNGs are complete, unless the checkpoint or the eval
settings changed (then the old predictions are deleted first: :mod:`advcam_pl.pipeline.provenance`,
policy ``replace``). The checkpoint must match ``cfg.model.module`` and hold finite weights.

Protocol (``cfg.model.eval``): logits at ``scales`` (+ mirrored), bilinearly upsampled to the image
and fused by a pixel-wise max of the logits (DeepLab-v2's MSC test), softmax, then the dense CRF with
DeepLab-v2's VOC parameters, argmax.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
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
from advcam_pl.pipeline.provenance import Provenance, file_identity, settings_of
from advcam_pl.training.callbacks import SegmentationWriter

log = logging.getLogger(__name__)

PAPER_VAL_MIOU = 68.1  # AdvCAM + DeepLab-v2 (ResNet-101, ImageNet), VOC 2012 val; test 68.0


# -- configuration --------------------------------------------------------------------------------


def crf_params(cfg: DictConfig) -> dict | None:
    """Keyword arguments of :func:`advcam_pl.refine.crf.crf_inference_prob`, or None (CRF off)."""
    crf = OmegaConf.to_container(cfg.model.eval.crf, resolve=True)
    if not crf.pop("enabled", True):
        return None
    return crf


def pred_dirs(cfg: DictConfig) -> dict[str, Path]:
    out = Path(cfg.artifacts.seg_pred_dir)
    dirs = {"val": out / "val"}
    if crf_params(cfg) is not None:
        dirs["val_no_crf"] = out / "val_no_crf"
    if cfg.model.eval.export_test:
        dirs["test"] = server_dir(out, cfg.model.eval.competition)
    return dirs


def export_ids(cfg: DictConfig, root: Path | None = None) -> list[str] | None:
    """Ids of ``cfg.data.test_list`` when the export is on and the list exists, else None."""
    if not cfg.model.eval.export_test or not cfg.data.get("test_list"):
        return None
    root = Path(cfg.data.root) if root is None else root
    if not (root / LIST_DIR / f"{cfg.data.test_list}.txt").is_file():
        return None
    return VOCReader(root, cfg.data.test_list).ids


ARCHITECTURE = ("depth", "num_classes", "rates")  # DeepLab hyper-parameters that must match cfg.model.module


def provenance(cfg: DictConfig) -> Provenance:
    """The predictions are the checkpoint's (by content) under the eval settings."""
    out = Path(cfg.artifacts.seg_pred_dir)
    settings = settings_of(cfg, ["model.eval", "data.name", "data.val_list", "data.test_list"],
                           ignore=["model.eval.crf_workers"])
    return Provenance("eval_seg", out, settings, {"seg_ckpt": file_identity(cfg.artifacts.seg_ckpt)},
                      keep_both="another artifacts.seg_pred_dir", policy="replace",
                      patterns=("val/*.png", "val_no_crf/*.png", "results/**/*.png", "results_*_test.tar.gz"),
                      companions=[Path(cfg.artifacts.seg_metrics)])


def fingerprint(cfg: DictConfig) -> str:
    """The digest of the checkpoint's SHA-256 and the eval settings (stored in the metrics JSON)."""
    return provenance(cfg).digest


def is_done(cfg: DictConfig) -> bool:
    metrics_path = Path(cfg.artifacts.seg_metrics)
    if not is_fresh([metrics_path], [cfg.artifacts.seg_ckpt]):
        return False
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError):
        return False
    if metrics.get("fingerprint") != fingerprint(cfg):
        return False
    ids = export_ids(cfg)
    if ids is None:
        return True
    folder = server_dir(cfg.artifacts.seg_pred_dir, cfg.model.eval.competition)
    return all(png_is_complete(folder / f"{i}.png") for i in ids)


# -- predictions ----------------------------------------------------------------------------------


def _predict_split(trainer: pl.Trainer, model: pl.LightningModule, writer: SegmentationWriter, root: Path,
                   split: str, targets: Callable[[str], dict[str, Path]], num_workers: int,
                   skip_bad: bool) -> int:
    """Predict every id of ``split`` whose target PNGs do not all exist; returns how many."""
    datamodule = SegmentationDataModule(
        root, val_list=split, num_workers=num_workers, skip_bad=skip_bad, predict_list=split,
        predict_exclude=lambda i: all(png_is_complete(p) for p in targets(i).values()),
    )  # fmt: skip
    datamodule.setup("predict")
    todo = len(datamodule.predict_set)
    if todo:
        log.info("eval_seg: predicting %d images of %s", todo, split)
        writer.targets = targets
        trainer.predict(model, datamodule=datamodule, return_predictions=False)
    else:
        log.info("eval_seg: every prediction of %s exists, nothing to do", split)
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


# -- the stage ------------------------------------------------------------------------------------


def run(cfg: DictConfig) -> dict:
    from advcam_pl.models.deeplab_v2 import load_deeplab

    root = data_root(cfg)
    ev = cfg.model.eval
    module = cfg.model.module
    model = load_deeplab(cfg.artifacts.seg_ckpt, expected={k: module[k] for k in ARCHITECTURE if k in module},
                         test_scales=list(ev.scales), test_flip=bool(ev.flip), test_fuse=str(ev.fuse))
    record = provenance(cfg)
    record.begin(cfg)
    current = record.digest
    dirs = pred_dirs(cfg)
    crf = crf_params(cfg)
    writer = SegmentationWriter(crf, ev.get("crf_workers", 0))
    trainer = build_trainer(cfg, (), [writer])

    def val_targets(image_id: str) -> dict[str, Path]:
        targets = {"final": dirs["val"] / f"{image_id}.png"}
        if "val_no_crf" in dirs:
            targets["no_crf"] = dirs["val_no_crf"] / f"{image_id}.png"
        return targets

    def test_targets(image_id: str) -> dict[str, Path]:
        return {"final": dirs["test"] / f"{image_id}.png"}

    skip_bad, workers = bool(cfg.data.skip_bad), int(cfg.data.num_workers)
    _predict_split(trainer, model, writer, root, cfg.data.val_list, val_targets, workers, skip_bad)
    ids = export_ids(cfg, root)
    if ids is not None:
        _predict_split(trainer, model, writer, root, cfg.data.test_list, test_targets, workers, skip_bad)
    elif ev.export_test:
        log.warning("eval_seg: no %s list under %s, so no test-server export (put VOC2012 test images into "
                    "JPEGImages and test.txt into ImageSets/Segmentation)", cfg.data.test_list,
                    root / LIST_DIR)

    metrics: dict = {"model": cfg.model.name, "cam": cfg.cam.name, "split": cfg.data.val_list,
                     "scales": list(ev.scales), "flip": bool(ev.flip), "fuse": str(ev.fuse), "crf": crf}
    if not trainer.is_global_zero:
        return metrics
    reader = VOCReader(root, cfg.data.val_list)
    conf, n_scored = score(reader, dirs["val"], skip_missing=skip_bad)
    iou = conf.iou
    metrics.update(num_images=n_scored, miou=float(np.nanmean(iou)), per_class_iou=iou_by_class(iou, CLASS_NAMES_BG))
    rows = {f"{cfg.cam.name} + {cfg.model.name}" + (" + CRF" if crf else ""): iou}
    if "val_no_crf" in dirs:
        iou_no_crf = score(reader, dirs["val_no_crf"], skip_missing=skip_bad)[0].iou
        metrics.update(miou_no_crf=float(np.nanmean(iou_no_crf)), per_class_iou_no_crf=iou_by_class(iou_no_crf, CLASS_NAMES_BG))
        rows = {f"{cfg.cam.name} + {cfg.model.name}": iou_no_crf, **rows}
    if ids is not None:
        check_submission(Path(cfg.artifacts.seg_pred_dir), ids, ev.competition)
        archive = make_archive(Path(cfg.artifacts.seg_pred_dir), ev.competition)
        metrics.update(test_split=cfg.data.test_list, num_test_images=len(ids),
                       competition=str(ev.competition), test_archive=str(archive))
    metrics["table_a1"] = wide_iou_table(rows)
    metrics["table"] = per_class_table(iou, CLASS_NAMES_BG)
    metrics["fingerprint"] = current
    metrics["objective"] = metrics["miou"]
    atomic_save_json(cfg.artifacts.seg_metrics, metrics)

    log.info("eval_seg: %s mIoU on %s = %.2f (paper, VOC val: %.1f)\n%s\n\n%s", cfg.model.name,
             cfg.data.val_list, 100 * metrics["miou"], PAPER_VAL_MIOU, metrics["table_a1"], metrics["table"])
    if ids is not None:
        log.info("eval_seg: test predictions for the VOC server in %s", metrics["test_archive"])
    with stage_loggers(cfg, "eval_seg") as loggers:
        log_metrics(loggers, {f"eval_seg/{k}": v for k, v in metrics.items()
                              if k in ("miou", "miou_no_crf", "num_images")})
        log_metrics(loggers, {f"eval_seg/iou/{n}": v for n, v in metrics["per_class_iou"].items()
                              if v is not None})
    return metrics
