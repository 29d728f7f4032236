"""Refinement settings that carry their meaning to any data (``auto`` in ``conf/irn``).

The official IR-label thresholds (0.35 / 0.15), the walk's background value (0.25), the walk length
(2^8 steps) and IRN's training pair radius (10) were tuned on PASCAL VOC: for its CAM scale and for
its stride-4 grid of ≈ 94 × 125 cells (a 375 × 500 image). Two rules carry them to other data; each
returns the official value exactly on VOC.

**CAM scale.** The official code evaluates its seeds at ``cam_eval_thres`` = 0.15
(:data:`VOC_SEED_THRESHOLD`; IRN's and AdvCAM's ``run_sample.py``), and the other thresholds sit on
the same max-normalised scale. When the seed evaluation of other maps peaks at ``t*``, read those maps
as VOC-like maps raised to a power: ``cam = cam_voc ** γ`` with ``γ = ln t* / ln 0.15``, so that
``t*`` lands where VOC's seed threshold does. Every official threshold ``t`` then becomes ``t ** γ``:
monotone, inside (0, 1), order kept (fg > bg), and ``t* = 0.15`` gives back the official values. A
power commutes with the walk's ``cam ** cam_power``, so the walk's background value follows the same
map.

**Grid size.** Distances on the stride-4 grid are measured in cells. With ``s`` the ratio of the
grid's geometric-mean side to VOC's (√(94·125) ≈ 108.4 cells), the IRN pair radius covers the same
fraction of an object, ``round(10 · s)`` (at least 2, the smallest radius with pairs), and the walk
spreads as far relative to the image: a random walk's reach grows with the square root of its step
count, so the steps scale with ``s²``: ``exp_times = round(8 + 2 · log2 s)`` (2^exp_times steps,
at least 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

VOC_SEED_THRESHOLD = 0.15  # official cam_eval_thres (IRN, AdvCAM run_sample.py)
VOC_GRID = (94, 125)  # stride-4 grid of a 375 × 500 VOC image
OFFICIAL_IR_LABEL = (0.35, 0.15)  # official AdvCAM conf_fg_thres, conf_bg_thres
OFFICIAL_WALK_BACKGROUND = 0.25  # sem_seg_bg_thres
OFFICIAL_EXP_TIMES = 8  # 2^8 = 256 walk steps
OFFICIAL_IRN_RADIUS = 10
MIN_IRN_RADIUS = 2  # refine.indexing.PathIndex: a radius below 2 has no pairs

AUTO = "auto"


def is_auto(value) -> bool:
    return isinstance(value, str) and value.strip().lower() == AUTO


# -- CAM scale ---------------------------------------------------------------------------------------


def cam_scale_exponent(best_threshold: float, reference: float = VOC_SEED_THRESHOLD) -> float:
    """``γ = ln t* / ln reference``: the power that maps the seed's best threshold onto VOC's."""
    for name, value in (("best_threshold", best_threshold), ("reference", reference)):
        if not 0.0 < float(value) < 1.0:
            raise ValueError(f"{name} must lie in (0, 1) (a threshold on max-normalised CAMs), got {value}")
    return math.log(best_threshold) / math.log(reference)


def rescale_threshold(official: float, best_threshold: float, reference: float = VOC_SEED_THRESHOLD) -> float:
    """An official threshold ``t`` carried to maps whose seed peaks at ``best_threshold``: ``t ** γ``."""
    return float(official) ** cam_scale_exponent(best_threshold, reference)


def ir_label_thresholds(
    best_threshold: float,
    official: tuple[float, float] = OFFICIAL_IR_LABEL,
    reference: float = VOC_SEED_THRESHOLD,
) -> tuple[float, float]:
    """``(fg_threshold, bg_threshold)`` of the IR labels for seeds that peak at ``best_threshold``.

    ``best_threshold = 0.15`` gives the official ``(0.35, 0.15)``; ``0.48`` gives ``(0.67, 0.48)``.
    """
    fg, bg = official
    return rescale_threshold(fg, best_threshold, reference), rescale_threshold(bg, best_threshold, reference)


def walk_background(
    best_threshold: float, official: float = OFFICIAL_WALK_BACKGROUND, reference: float = VOC_SEED_THRESHOLD
) -> float:
    """The random walk's background value for seeds that peak at ``best_threshold`` (0.15 → 0.25)."""
    return rescale_threshold(official, best_threshold, reference)


# -- grid size ---------------------------------------------------------------------------------------


def grid_scale(grid_hw: tuple[float, float], reference: tuple[float, float] = VOC_GRID) -> float:
    """``s`` = √(h·w) / √(h_voc·w_voc): the grid's side relative to VOC's stride-4 grid."""
    height, width = (float(v) for v in grid_hw)
    if height <= 0 or width <= 0:
        raise ValueError(f"grid size must be positive, got {grid_hw}")
    return math.sqrt(height * width / (reference[0] * reference[1]))


def irn_radius(grid_hw: tuple[float, float], official: int = OFFICIAL_IRN_RADIUS) -> int:
    """IRN's training pair radius for a stride-4 grid of ``grid_hw`` cells (VOC's 94 × 125 → 10)."""
    return max(MIN_IRN_RADIUS, round(official * grid_scale(grid_hw)))


def walk_exp_times(grid_hw: tuple[float, float], official: int = OFFICIAL_EXP_TIMES) -> int:
    """``exp_times`` (the walk takes 2^exp_times steps) for a grid of ``grid_hw`` cells (VOC → 8)."""
    return max(0, round(official + 2.0 * math.log2(grid_scale(grid_hw))))


def typical_grid(image_sizes: Iterable[tuple[int, int]], stride: int = 4) -> tuple[float, float]:
    """The median stride-4 grid ``(⌈H/4⌉, ⌈W/4⌉)`` of images of size ``(H, W)``, as floats."""
    cells = np.array([(math.ceil(h / stride), math.ceil(w / stride)) for h, w in image_sizes], dtype=np.float64)
    if cells.size == 0:
        raise ValueError("no images to measure the grid size from")
    areas = cells[:, 0] * cells[:, 1]
    median = cells[np.argsort(areas)[len(areas) // 2]]  # the image of median area (keeps its aspect)
    return float(median[0]), float(median[1])


def image_sizes(root: str | Path, ids: Iterable[str]) -> list[tuple[int, int]]:
    """``(H, W)`` of ``JPEGImages/<id>.jpg`` from the file headers (no decoding)."""
    from PIL import Image

    from advcam_pl.data.voc import IMAGE_DIR

    sizes = []
    for image_id in ids:
        with Image.open(Path(root) / IMAGE_DIR / f"{image_id}.jpg") as image:
            width, height = image.size
        sizes.append((height, width))
    return sizes
