"""PASCAL VOC evaluation-server export and the paper's wide per-class table.

The server (host.robots.ox.ac.uk) takes a ``.tar.gz`` whose members are
``results/VOC2012/Segmentation/<comp>_test_cls/<id>.png``: one palette PNG per test image, same size
as the image, palette indices 0–20. ``<comp>`` is the competition:

- ``comp5``: trained on VOC 2012 data only;
- ``comp6``: trained with any other data — ImageNet pre-training counts, so the WSSS literature
  (and the DeepLab / SEAM-style submission scripts) uses ``comp6``. AdvCAM's and IRN's READMEs do
  not describe a test-server submission; ``comp6`` is our default (``model.eval.competition``).

Every PNG is written atomically (temp name + rename), so "the file exists" means "this image is
done" and a killed export resumes where it stopped.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from advcam_pl.io import atomic_save_palette_png, atomic_write

COMPETITIONS = {
    "comp5": "trained on VOC 2012 data only",
    "comp6": "trained with data from outside VOC 2012 (e.g. ImageNet pre-training)",
}

# Column names of the per-class table in the AdvCAM paper's appendix (Table A1), VOC order.
VOC_SHORT_NAMES: tuple[str, ...] = (
    "bkg", "aero", "bike", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "table",
    "dog", "horse", "motor", "person", "plant", "sheep", "sofa", "train", "tv",
)  # fmt: skip


def server_dir(root: str | os.PathLike, competition: str = "comp6", year: str = "VOC2012",
               split: str = "test") -> Path:
    """``root/results/<year>/Segmentation/<competition>_<split>_cls`` (the server's folder names)."""
    if competition not in COMPETITIONS:
        raise ValueError(f"competition must be one of {sorted(COMPETITIONS)}, got {competition!r}")
    return Path(root) / "results" / year / "Segmentation" / f"{competition}_{split}_cls"


def write_prediction(root: str | os.PathLike, image_id: str, labels: np.ndarray,
                     competition: str = "comp6") -> Path:
    """Write ``labels`` ``[H, W]`` (0–20) as ``server_dir(root, competition)/<id>.png``
    (palette PNG, atomic)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or (labels.size and (labels.min() < 0 or labels.max() > 20)):
        raise ValueError(f"{image_id}: expected an [H, W] map of labels 0-20, got shape {labels.shape}")
    return atomic_save_palette_png(server_dir(root, competition) / f"{image_id}.png", labels.astype(np.uint8))


def missing_predictions(root: str | os.PathLike, ids: Iterable[str], competition: str = "comp6") -> list[str]:
    """The ids whose PNG is not in the server folder yet."""
    folder = server_dir(root, competition)
    return [i for i in ids if not (folder / f"{i}.png").is_file()]


def check_submission(root: str | os.PathLike, ids: Sequence[str], competition: str = "comp6",
                     sizes: Mapping[str, tuple[int, int]] | None = None) -> None:
    """Raise ``ValueError`` unless every id has a palette PNG with labels 0–20 (and, when ``sizes``
    gives ``{id: (H, W)}``, the image's size)."""
    missing = missing_predictions(root, ids, competition)
    if missing:
        raise ValueError(f"{len(missing)} of {len(ids)} predictions missing in "
                         f"{server_dir(root, competition)} (e.g. {missing[0]}.png)")
    folder = server_dir(root, competition)
    for image_id in ids:
        path = folder / f"{image_id}.png"
        with Image.open(path) as image:
            if image.mode != "P":
                raise ValueError(f"{path} has mode {image.mode!r}, the server expects a palette PNG ('P')")
            labels = np.asarray(image)
        if labels.max() > 20:
            raise ValueError(f"{path} holds label {labels.max()}; the server expects 0-20")
        if sizes is not None and image_id in sizes and labels.shape != tuple(sizes[image_id]):
            raise ValueError(f"{path} is {labels.shape}, the image is {tuple(sizes[image_id])}")


def make_archive(root: str | os.PathLike, competition: str = "comp6",
                 archive: str | os.PathLike | None = None) -> Path:
    """Pack ``server_dir(root, competition)`` into a ``.tar.gz`` for upload; members start with
    ``results/``. Default path: ``root/results_<competition>_test.tar.gz``. Written atomically."""
    root = Path(root)
    folder = server_dir(root, competition)
    if not folder.is_dir():
        raise FileNotFoundError(f"nothing to pack: {folder} does not exist")
    archive = Path(archive) if archive is not None else root / f"results_{competition}_test.tar.gz"

    def write(tmp: str) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            for path in sorted(folder.glob("*.png")):
                tar.add(path, arcname=str(path.relative_to(root)))

    atomic_write(archive, write)
    return archive


def wide_iou_table(rows: Mapping[str, Sequence[float]], names: Sequence[str] = VOC_SHORT_NAMES,
                   method_header: str = "method") -> str:
    """Per-class IoU as in the paper's Table A1: one row per method, the 21 classes and mIoU as
    columns, values in % with one decimal. ``rows`` maps a method name to its IoU ``[21]`` (0–1,
    NaN for a class absent everywhere)."""
    first = max([len(method_header), *(len(k) for k in rows)])
    columns = [*names, "mIoU"]
    widths = [max(4, len(c)) for c in columns]
    lines = [" ".join([f"{method_header:<{first}}", *(f"{c:>{w}}" for c, w in zip(columns, widths))])]
    for method, iou in rows.items():
        iou = np.asarray(iou, dtype=np.float64)
        if len(iou) != len(names):
            raise ValueError(f"{method}: {len(iou)} IoU values for {len(names)} classes")
        cells = ["-" if np.isnan(v) else f"{100 * v:.1f}" for v in iou] + [f"{100 * np.nanmean(iou):.1f}"]
        lines.append(" ".join([f"{method:<{first}}", *(f"{c:>{w}}" for c, w in zip(cells, widths))]))
    return "\n".join(lines)
