"""Stage eval_semi: CCT's val mIoU with the official multi-scale + flip inference (0.5–1.5, raw outputs
averaged), the dense CRF of AdvCAM's 77.8, and the VOC evaluation-server export of its test predictions.

Reads ``cfg.artifacts.semi_ckpt``; writes predictions under ``cfg.artifacts.semi_pred_dir`` and
``cfg.artifacts.semi_metrics`` (mIoU with and without CRF, per-class IoU in the paper's Table A1
layout), as laid out in :mod:`advcam_pl.pipeline.segmentation_eval`; the settings are
``cfg.semi.eval``. A re-run skips the images whose PNGs are complete, unless the checkpoint (by content)
or the settings changed. The checkpoint is read as data only and must match ``cfg.semi.module``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from advcam_pl.pipeline import segmentation_eval
from advcam_pl.pipeline.report import PAPER, semi_label
from advcam_pl.pipeline.segmentation_eval import EvalTarget

ARCHITECTURE = ("depth", "num_classes", "deep_stem", "psp_bins")  # CCT hyper-parameters that must match cfg.semi.module


def target(cfg: DictConfig) -> EvalTarget:
    a = cfg.artifacts
    return EvalTarget("eval_semi", Path(a.semi_ckpt), Path(a.semi_pred_dir), Path(a.semi_metrics), cfg.semi.eval)


def is_done(cfg: DictConfig) -> bool:
    return segmentation_eval.is_done(cfg, target(cfg))


def run(cfg: DictConfig) -> dict:
    from advcam_pl.models.cct import load_cct

    ev, module = cfg.semi.eval, cfg.semi.module
    model = load_cct(cfg.artifacts.semi_ckpt, expected={k: module[k] for k in ARCHITECTURE if k in module},
                     test_scales=list(ev.scales), test_flip=bool(ev.flip), test_average=str(ev.average))
    info = {"semi": cfg.semi.name, "weak_labels": str(cfg.semi.weak_labels),
            "cam": None if cfg.semi.weak_labels == "none" else cfg.cam.name,
            "scales": list(ev.scales), "flip": bool(ev.flip), "average": str(ev.average)}
    return segmentation_eval.evaluate(cfg, target(cfg), model, semi_label(cfg), info, PAPER["semi_val"])
