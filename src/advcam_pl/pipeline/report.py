"""Summary tables from the metrics files the stages wrote (``cfg.artifacts.*_metrics``).

A table is a label column and value columns, built from rows of ``(label, values)``; values are
mIoU fractions printed as percentages (or numbers already in %, ``Column(scale=1)``), and a
missing value prints ``-``. :func:`seed_method_table` is the demo's table (one row per seed
method), :func:`paper_table` the paper-vs-ours table of ``make reproduce-weak``; the
semi-supervised reproduction adds its rows to :data:`PAPER` and its own row builder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

log = logging.getLogger(__name__)

# The paper's mIoU (%) on VOC 2012 (ResNet-50 CAM, IRN, DeepLab-v2 ResNet-101), DESIGN §1.
PAPER = {"seed": 55.6, "seed_crf": 62.1, "pseudo_mask": 69.9, "val": 68.1, "test": 68.0}


@dataclass(frozen=True)
class Column:
    header: str
    width: int = 6
    scale: float = 100.0  # fractions → %; 1 for numbers already in %


Row = tuple[str, Sequence[float | None]]


def format_table(label_header: str, columns: Sequence[Column], rows: Sequence[Row], *,
                 label_width: int = 0, sep: str = " ") -> str:
    """A header line, a rule, one line per row; the label column is as wide as its longest entry
    (at least ``label_width``), each value right-aligned in its column with one decimal."""
    width = max(label_width, len(label_header), *(len(label) for label, _ in rows))
    head = sep.join([f"{label_header:<{width}}", *(f"{c.header:>{c.width}}" for c in columns)])
    lines = [head, "-" * len(head)]
    for label, values in rows:
        cells = [f"{'-':>{c.width}}" if v is None else f"{c.scale * float(v):{c.width}.1f}"
                 for c, v in zip(columns, values, strict=True)]
        lines.append(sep.join([f"{label:<{width}}", *cells]))
    return "\n".join(lines)


def read_metrics(path: str | Path) -> dict:
    """The JSON a stage wrote at ``path``; ``{}`` while the stage has not run (or when the file
    cannot be parsed, which is logged: the table then shows ``-``)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        log.warning("%s is not valid JSON (%s); its numbers are left out of the table", path, err)
        return {}


def chain_metrics(cfg: DictConfig) -> dict:
    """The weak chain's metrics files for ``cfg.cam``: ``{"cam": eval_cam's, "mask":
    eval_sem_seg's, "seg": eval_seg's}`` (``seg`` empty unless ``eval_seg`` is in ``cfg.stages``)."""
    from advcam_pl.pipeline import stage_names

    runs_seg = "eval_seg" in stage_names(cfg.stages)
    return {"cam": read_metrics(cfg.artifacts.cam_metrics),
            "mask": read_metrics(cfg.artifacts.sem_seg_metrics),
            "seg": read_metrics(cfg.artifacts.seg_metrics) if runs_seg else {}}


SEED_METHOD_COLUMNS = (Column("seed"), Column("+CRF"), Column("mask"), Column("seg val", width=8))


def seed_method_table(cfgs: Mapping[str, DictConfig]) -> str:
    """One row per seed method (label → the config its chain ran with): seed, seed + CRF and
    pseudo-mask mIoU on ``data.eval_list``, segmentation mIoU on ``data.val_list``."""
    rows = []
    for label, cfg in cfgs.items():
        m = chain_metrics(cfg)
        rows.append((label, [m["cam"].get("seed_miou"), m["cam"].get("seed_crf_miou"),
                             m["mask"].get("miou"), m["seg"].get("miou")]))
    return format_table("seeds", SEED_METHOD_COLUMNS, rows, label_width=8)


def paper_table(cfg: DictConfig) -> str:
    """The paper's weakly supervised numbers beside this run's (whatever metrics exist yet), then
    the per-class val IoU in the paper's Table A1 layout and the test-server archive, if written."""
    m = chain_metrics(cfg)
    cam, mask, seg = m["cam"], m["mask"], m["seg"]
    rows = [
        (f"seed ({cam.get('split', cfg.data.eval_list)})", [PAPER["seed"], cam.get("seed_miou")]),
        ("seed + CRF", [PAPER["seed_crf"], cam.get("seed_crf_miou")]),
        (f"pseudo mask ({mask.get('split', cfg.data.eval_list)})", [PAPER["pseudo_mask"], mask.get("miou")]),
        (f"DeepLab-v2 + CRF ({seg.get('split', cfg.data.val_list)})", [PAPER["val"], seg.get("miou")]),
        ("DeepLab-v2 (test server)", [PAPER["test"], None]),
    ]
    columns = (Column("paper", width=5, scale=1), Column("ours", width=5))
    lines = [format_table("mIoU (%)", columns, rows, sep="  ")]
    if seg.get("table_a1"):
        lines += ["", "per-class IoU on val (paper Table A1 layout):", seg["table_a1"]]
    if seg.get("test_archive"):
        lines += ["", f"upload for the test score: {seg['test_archive']}"]
    return "\n".join(lines)
