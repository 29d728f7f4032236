"""Summary tables from the metrics files the stages wrote (``cfg.artifacts.*_metrics``).

A table (:class:`Table`) is a label column and value columns, built from rows of ``(label,
values)``; values are mIoU fractions printed as percentages (or numbers already in %,
``Column(scale=1)``), and a missing value prints ``-``. :func:`seed_method_table` is the demo's table
(one row per seed method) and :func:`segmentation_table` its segmentation rows (DeepLab-v2 and the CCT
runs); :func:`paper_table` is the paper-vs-ours table of ``make reproduce-weak``,
:func:`semi_paper_table` that of ``make reproduce-semi``. Each ``*_table`` prints the :class:`Table`
of its ``*_summary``, which the drivers also log as a W&B table (:func:`advcam_pl.viz.stages.log_summary`).
:func:`table1` (the paper's Table 1 on this run's data),
:func:`climb_curve_table` (Fig. 6a from make_cam's climb analysis) and :func:`climb_reading` are
``make bench-chain``'s. A new result adds its paper numbers to :data:`PAPER` and its rows to a table builder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

log = logging.getLogger(__name__)

# The paper's mIoU (%) on VOC 2012 (ResNet-50 CAM, IRN, DeepLab-v2 ResNet-101), DESIGN §1; semi-supervised
# (CCT.md): CCT on 1,464 pixel-labelled train images + 9,118 train_aug − train images with AdvCAM's pseudo
# masks, multi-scale + flip + CRF ("semi_val", "semi_test"), and CCT's own result with its own CAM-based weak
# labels ("cct_weak_val", the CCT paper's 73.2 that AdvCAM compares with).
PAPER = {"seed": 55.6, "seed_crf": 62.1, "pseudo_mask": 69.9, "val": 68.1, "test": 68.0,
         "semi_val": 77.8, "semi_test": 76.9, "cct_weak_val": 73.2, "cam_seed": 48.8}


@dataclass(frozen=True)
class Column:
    header: str
    width: int = 6
    scale: float = 100.0  # fractions → %; 1 for numbers already in %
    digits: int = 1       # decimals printed


Row = tuple[str, Sequence[float | None]]


def format_table(label_header: str, columns: Sequence[Column], rows: Sequence[Row], *,
                 label_width: int = 0, sep: str = " ") -> str:
    """A header line, a rule, one line per row; the label column is as wide as its longest entry
    (at least ``label_width``), each value right-aligned in its column with ``Column.digits``
    decimals (one by default)."""
    width = max(label_width, len(label_header), *(len(label) for label, _ in rows))
    head = sep.join([f"{label_header:<{width}}", *(f"{c.header:>{c.width}}" for c in columns)])
    lines = [head, "-" * len(head)]
    for label, values in rows:
        cells = [f"{'-':>{c.width}}" if v is None else f"{c.scale * float(v):{c.width}.{c.digits}f}"
                 for c, v in zip(columns, values, strict=True)]
        lines.append(sep.join([f"{label:<{width}}", *cells]))
    return "\n".join(lines)


@dataclass(frozen=True)
class Table:
    """A summary table: what :func:`format_table` prints, and its :meth:`records` for a W&B table."""

    label_header: str
    columns: Sequence[Column]
    rows: Sequence[Row]
    label_width: int = 0
    sep: str = " "

    def text(self) -> str:
        return format_table(self.label_header, self.columns, self.rows, label_width=self.label_width, sep=self.sep)

    def records(self) -> tuple[list[str], list[list]]:
        """``(headers, rows)``: the label, then each value in the printed unit (%) rounded to 0.01;
        ``None`` where missing."""
        headers = [self.label_header, *(c.header for c in self.columns)]
        rows = [[label, *(None if v is None else round(c.scale * float(v), 2)
                          for c, v in zip(self.columns, values, strict=True))] for label, values in self.rows]
        return headers, rows


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
    eval_sem_seg's, "walk": eval_walk_ceiling's, "seg": eval_seg's}`` (``walk`` and ``seg`` empty
    unless their stage is in ``cfg.stages``)."""
    from advcam_pl.pipeline import stage_names

    stages = stage_names(cfg.stages)
    return {"cam": read_metrics(cfg.artifacts.cam_metrics),
            "mask": read_metrics(cfg.artifacts.sem_seg_metrics),
            "walk": read_metrics(cfg.artifacts.walk_ceiling_metrics) if "eval_walk_ceiling" in stages else {},
            "seg": read_metrics(cfg.artifacts.seg_metrics) if "eval_seg" in stages else {}}


SEED_METHOD_COLUMNS = (Column("seed"), Column("+CRF"), Column("mask"), Column("GT edges", width=8),
                       Column("seg val", width=8))


def seed_method_table(cfgs: Mapping[str, DictConfig], reference_rows: Sequence[Row] = ()) -> str:
    """:func:`seed_method_summary`, printed."""
    return seed_method_summary(cfgs, reference_rows).text()


def seed_method_summary(cfgs: Mapping[str, DictConfig], reference_rows: Sequence[Row] = ()) -> Table:
    """One row per seed method (label → the config its chain ran with): seed, seed + CRF and
    pseudo-mask mIoU on ``data.eval_list``, the same walk with ground-truth boundaries ("GT
    edges", the walk's ceiling), segmentation mIoU on ``data.val_list``; then ``reference_rows``
    (values in the same columns)."""
    rows = []
    for label, cfg in cfgs.items():
        m = chain_metrics(cfg)
        rows.append((label, [m["cam"].get("seed_miou"), m["cam"].get("seed_crf_miou"),
                             m["mask"].get("miou"), m["walk"].get("miou"), m["seg"].get("miou")]))
    return Table("seeds", SEED_METHOD_COLUMNS, [*rows, *reference_rows], label_width=8)


def weak_chain_rows(cfg: DictConfig, m: Mapping[str, dict]) -> list[Row]:
    """Paper-vs-ours rows of the seeds and pseudo masks (``m``: :func:`chain_metrics`)."""
    cam, mask = m["cam"], m["mask"]
    return [
        (f"seed ({cam.get('split', cfg.data.eval_list)})", [PAPER["seed"], cam.get("seed_miou")]),
        ("seed + CRF", [PAPER["seed_crf"], cam.get("seed_crf_miou")]),
        (f"pseudo mask ({mask.get('split', cfg.data.eval_list)})", [PAPER["pseudo_mask"], mask.get("miou")]),
    ]


PAPER_COLUMNS = (Column("paper", width=5, scale=1), Column("ours", width=5))


def with_details(table: str, metrics: Mapping) -> str:
    """``table``, then the per-class val IoU in the paper's Table A1 layout and the test-server
    archive of an evaluation's ``metrics``, where written."""
    lines = [table]
    if metrics.get("table_a1"):
        lines += ["", "per-class IoU on val (paper Table A1 layout):", metrics["table_a1"]]
    if metrics.get("test_archive"):
        lines += ["", f"upload for the test score: {metrics['test_archive']}"]
    return "\n".join(lines)


def paper_table(cfg: DictConfig) -> str:
    """:func:`paper_summary`, then the per-class val IoU in the paper's Table A1 layout and the
    test-server archive, if written."""
    return with_details(paper_summary(cfg).text(), chain_metrics(cfg)["seg"])


def paper_summary(cfg: DictConfig) -> Table:
    """The paper's weakly supervised numbers beside this run's (whatever metrics exist yet)."""
    m = chain_metrics(cfg)
    seg = m["seg"]
    rows = [
        *weak_chain_rows(cfg, m),
        (f"DeepLab-v2 + CRF ({seg.get('split', cfg.data.val_list)})", [PAPER["val"], seg.get("miou")]),
        ("DeepLab-v2 (test server)", [PAPER["test"], None]),
    ]
    return Table("mIoU (%)", PAPER_COLUMNS, rows, sep="  ")


def crf_mious(metrics: Mapping) -> tuple[float | None, float | None]:
    """``(mIoU without CRF, mIoU with CRF)`` of an ``eval_seg`` / ``eval_semi`` metrics file (None where
    that evaluation did not run)."""
    if metrics.get("crf"):
        return metrics.get("miou_no_crf"), metrics.get("miou")
    return metrics.get("miou"), None


def semi_label(cfg: DictConfig) -> str:
    """How tables and logs name a CCT run: ``"cct + advcam masks"``, ``"cct + cam IR labels"``,
    ``"cct, no weak labels"``."""
    kinds = {"sem_seg": "masks", "ir_label": "IR labels"}
    if cfg.semi.weak_labels not in kinds:
        return f"{cfg.semi.name}, no weak labels"
    return f"{cfg.semi.name} + {cfg.cam.name} {kinds[cfg.semi.weak_labels]}"


def semi_paper_table(cfg: DictConfig) -> str:
    """:func:`semi_paper_summary`, then Table A1 and the test-server archive, if written."""
    return with_details(semi_paper_summary(cfg).text(), read_metrics(cfg.artifacts.semi_metrics))


def semi_paper_summary(cfg: DictConfig) -> Table:
    """The paper's semi-supervised numbers beside this run's: the weak chain's seeds and pseudo masks,
    CCT multi-scale + flip without and with the CRF, the test server, and CCT's own result to
    compare with."""
    m = chain_metrics(cfg)
    semi = read_metrics(cfg.artifacts.semi_metrics)
    no_crf, with_crf = crf_mious(semi)
    label, split = semi_label(cfg), semi.get("split", cfg.data.val_list)
    rows = [
        *weak_chain_rows(cfg, m),
        (f"{label}, MS + flip ({split})", [None, no_crf]),
        (f"{label}, MS + flip + CRF ({split})", [PAPER["semi_val"], with_crf]),
        (f"{label} (test server)", [PAPER["semi_test"], None]),
        ("CCT, its own weak labels (CCT paper)", [PAPER["cct_weak_val"], None]),
    ]
    return Table("mIoU (%)", PAPER_COLUMNS, rows, sep="  ")


SEGMENTATION_COLUMNS = (Column("MS"), Column("MS+CRF", width=7))


def segmentation_table(rows: Mapping[str, Mapping]) -> str:
    """:func:`segmentation_summary`, printed."""
    return segmentation_summary(rows).text()


def segmentation_summary(rows: Mapping[str, Mapping]) -> Table:
    """One row per segmentation network (label → its ``eval_seg`` / ``eval_semi`` metrics): val mIoU
    of the multi-scale + flip prediction without and with the dense CRF."""
    return Table("segmentation", SEGMENTATION_COLUMNS,
                 [(label, list(crf_mious(metrics))) for label, metrics in rows.items()], sep="  ")



TABLE1_COLUMNS = (Column("seed"), Column("+CRF"), Column("mask"), Column("thr", width=5, scale=1, digits=2))


def table1_values(cfg: DictConfig) -> list[float | None]:
    """Seed, seed + CRF and pseudo-mask mIoU on ``data.eval_list`` and the seed's best background
    threshold of ``cfg.cam``'s chain (``None`` where a stage has not run)."""
    m = chain_metrics(cfg)
    return [m["cam"].get("seed_miou"), m["cam"].get("seed_crf_miou"), m["mask"].get("miou"),
            m["cam"].get("best_threshold")]


def _difference(a: Sequence[float | None], b: Sequence[float | None]) -> list[float | None]:
    return [None if x is None or y is None else x - y for x, y in zip(a, b)]


def table1(cfgs: Mapping[str, DictConfig], baseline: str | None = None, reference_rows: Sequence[Row] = ()) -> str:
    """The paper's Table 1 on this run's data: one row per seed method (label → the config its chain
    ran with; :func:`table1_values`), a ``<label> − <baseline>`` row for every other method, then
    ``reference_rows`` (same columns) and the paper's VOC numbers."""
    values = {label: table1_values(cfg) for label, cfg in cfgs.items()}
    rows: list[Row] = list(values.items())
    if baseline is not None:
        rows += [(f"{label} − {baseline}", _difference(v, values[baseline])[:3] + [None])
                 for label, v in values.items() if label != baseline]
    rows += [*reference_rows,
             ("paper, VOC: CAM", [PAPER["cam_seed"] / 100, None, None, None]),
             ("paper, VOC: AdvCAM", [PAPER["seed"] / 100, PAPER["seed_crf"] / 100, PAPER["pseudo_mask"] / 100, None])]
    return format_table("seeds", TABLE1_COLUMNS, rows, label_width=8)


CLIMB_COLUMNS = (Column("seed"), Column("thr", width=5, scale=1, digits=2), Column("noise %", width=7),
                 Column("amp D", scale=1, digits=2), Column("amp N", scale=1, digits=2))


def _curve(curves: Mapping, key: str) -> list:
    return list(curves.get(key) or [None] * len(curves.get("steps", [])))


def climb_curve_table(curves: Mapping) -> str:
    """Fig. 6a and its companions from make_cam's climb analysis (``<cam_dir>_analysis.json``,
    :meth:`advcam_pl.advcam.analysis.ClimbStats.summary`), one row per step ``t``: seed mIoU at
    the best threshold of the maps accumulated up to ``t`` and that threshold, the proportion of
    noise (pixels added to the seed since ``t = 0`` that are background in the GT), and the
    attribution's amplification ``A_t / A_0`` in the discriminative (D) and the other (N) regions
    of the objects."""
    columns = [_curve(curves, k) for k in ("seed_miou", "best_threshold", "noise_proportion",
                                           "amplification_discriminative", "amplification_non_discriminative")]
    rows = [(str(t), [column[i] for column in columns]) for i, t in enumerate(curves.get("steps", []))]
    return format_table("t", CLIMB_COLUMNS, rows, label_width=3)


def climb_reading(cam: Mapping, advcam: Mapping, curves: Mapping, paper_gain: float = PAPER["seed"] - PAPER["cam_seed"]) -> list[str]:
    """What the seeds say, in sentences built from the numbers: AdvCAM's seed gain over CAM
    (eval_cam metrics ``cam`` and ``advcam``) against the paper's; when AdvCAM does not beat CAM,
    why, from the climb analysis ``curves``: how the seed moves along the climb, whether the climb
    amplifies the object's non-discriminative regions more than its discriminative ones (the
    mechanism of the paper's Fig. 2), and how much of what it adds to the seed is background."""
    cam_seed, adv_seed = cam.get("seed_miou"), advcam.get("seed_miou")
    if cam_seed is None or adv_seed is None:
        return ["no seed comparison: eval_cam has not run for both methods"]
    gain = 100 * (adv_seed - cam_seed)
    lines = [f"AdvCAM − CAM seed mIoU: {gain:+.1f} points (paper, VOC: {paper_gain:+.1f})."]
    if gain > 0:
        lines.append("AdvCAM beats CAM on the seeds.")
        return lines
    lines.append("AdvCAM does not beat CAM on the seeds. The climb analysis of the same images says why:")
    seed = [v for v in _curve(curves, "seed_miou")]
    if seed and all(v is not None for v in seed):
        steps, thr = curves["steps"], _curve(curves, "best_threshold")
        peak = max(range(len(seed)), key=seed.__getitem__)
        moved = "raises" if seed[-1] > seed[0] else "lowers"
        lines.append(
            f"- seed along the climb: {100 * seed[0]:.1f} at t = {steps[0]}, best {100 * seed[peak]:.1f} at "
            f"t = {steps[peak]}, {100 * seed[-1]:.1f} at t = {steps[-1]} (best threshold {thr[0]:.2f} → {thr[-1]:.2f}): "
            f"the climb {moved} the seed by {100 * abs(seed[-1] - seed[0]):.1f} points"
            + (f"; its t = 0 maps score {100 * (cam_seed - seed[0]):.1f} below plain CAM's"
               if seed[-1] > seed[0] and seed[0] < cam_seed else "") + ".")
    disc = _curve(curves, "amplification_discriminative")
    other = _curve(curves, "amplification_non_discriminative")
    if disc and disc[-1] is not None and other[-1] is not None:
        spreads = other[-1] > disc[-1]
        lines.append(
            f"- amplification inside the objects at the last step (A_t / A_0): discriminative ×{disc[-1]:.2f}, "
            f"the rest ×{other[-1]:.2f} — "
            + ("the climb raises the non-discriminative parts more, the paper's mechanism (Fig. 2)."
               if spreads else "the climb does not raise the non-discriminative parts more than the "
                               "discriminative ones, so it cannot spread the map over the object (paper Fig. 2)."))
    noise = _curve(curves, "noise_proportion")
    if noise and noise[-1] is not None:
        added = (curves.get("added_pixels") or [None])[-1]
        lines.append(
            f"- noise: of the pixels added to the seed since t = 0 (threshold {curves.get('noise_threshold')}"
            + (f", {added} pixels" if added is not None else "") + f"), {100 * noise[-1]:.1f} % are background in the GT"
            + (" — most of what the climb adds is background." if noise[-1] > 0.5 else "."))
    return lines
