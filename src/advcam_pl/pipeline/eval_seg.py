"""Stage eval_seg: the segmentation network's val mIoU (multi-scale + flip, max fusion, dense CRF)
and the VOC evaluation-server export of its test predictions.

Reads ``cfg.artifacts.seg_ckpt``; writes predictions under ``cfg.artifacts.seg_pred_dir`` and
``cfg.artifacts.seg_metrics`` (mIoU with and without CRF, per-class IoU, the tables), as laid out in
:mod:`advcam_pl.pipeline.segmentation_eval`; a re-run skips the images whose PNGs are complete, unless
the checkpoint (by content) or the eval settings changed. The checkpoint is read as data only and must
match ``cfg.model.module`` (depth, classes, ASPP rates) with finite weights.

Protocol (``cfg.model.eval``): logits at ``scales`` (+ mirrored), bilinearly upsampled to the image
and fused by a pixel-wise max of the logits (DeepLab-v2's MSC test), softmax, then the dense CRF with
DeepLab-v2's VOC parameters, argmax.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from advcam_pl.pipeline import segmentation_eval
from advcam_pl.pipeline.report import PAPER
from advcam_pl.pipeline.segmentation_eval import EvalTarget

ARCHITECTURE = ("depth", "num_classes", "rates")  # DeepLab hyper-parameters that must match cfg.model.module


def target(cfg: DictConfig) -> EvalTarget:
    a = cfg.artifacts
    return EvalTarget("eval_seg", Path(a.seg_ckpt), Path(a.seg_pred_dir), Path(a.seg_metrics), cfg.model.eval)


def is_done(cfg: DictConfig) -> bool:
    return segmentation_eval.is_done(cfg, target(cfg))


def run(cfg: DictConfig) -> dict:
    from advcam_pl.models.deeplab_v2 import load_deeplab

    ev, module = cfg.model.eval, cfg.model.module
    model = load_deeplab(cfg.artifacts.seg_ckpt, expected={k: module[k] for k in ARCHITECTURE if k in module},
                         test_scales=list(ev.scales), test_flip=bool(ev.flip), test_fuse=str(ev.fuse))
    info = {"model": cfg.model.name, "cam": cfg.cam.name, "scales": list(ev.scales), "flip": bool(ev.flip),
            "fuse": str(ev.fuse)}
    return segmentation_eval.evaluate(cfg, target(cfg), model, f"{cfg.cam.name} + {cfg.model.name}", info,
                                      PAPER["val"])
