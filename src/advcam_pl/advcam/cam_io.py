"""CAM files: one ``<id>.npz`` per image with ``keys`` [n] int64, ``cam`` and ``high_res`` float32.

Every stage reads and writes them through this module (``cam_path`` + ``load_cam`` / ``save_cam``;
``cam_is_complete`` is the cheap "finished" check of resume). Maps must be finite: ``save_cam`` and
``load_cam`` raise :class:`~advcam_pl.errors.NonFiniteError` naming the image otherwise (a diverged
classifier gives all-NaN maps, which would pass every later stage silently).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from advcam_pl.advcam.aggregate import strided_size
from advcam_pl.errors import CorruptFileError, NonFiniteError
from advcam_pl.io import atomic_save_npz, load_npz, npz_is_complete

CAM_KEYS = ("keys", "cam", "high_res")
CAM_SUFFIX = ".npz"


def cam_path(cam_dir: str | os.PathLike, image_id: str) -> Path:
    return Path(cam_dir) / f"{image_id}{CAM_SUFFIX}"


def cam_is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a whole CAM file (the archive opens and holds every key); cheap: the
    arrays are not read."""
    return npz_is_complete(path, CAM_KEYS)


def check_finite_maps(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Raise :class:`NonFiniteError` naming the image of ``path`` unless ``cam`` and ``high_res`` are finite."""
    for key in ("cam", "high_res"):
        bad = int(np.size(arrays[key]) - np.count_nonzero(np.isfinite(arrays[key])))
        if bad:
            raise NonFiniteError(
                f"image {Path(path).stem}: {bad} of {np.size(arrays[key])} values of its {key} map are NaN or "
                f"infinite ({path}); the classifier's outputs are not finite (a diverged training?): check "
                "the train_cam loss and retrain it"
            )


def save_cam(path: str | os.PathLike, keys: np.ndarray, cam: np.ndarray, high_res: np.ndarray) -> Path:
    """Write one CAM file atomically (temp name + rename), with the dtypes of the contract; non-finite
    maps are an error naming the image."""
    arrays = {"keys": np.asarray(keys, dtype=np.int64), "cam": np.asarray(cam, dtype=np.float32),
              "high_res": np.asarray(high_res, dtype=np.float32)}
    check_finite_maps(path, arrays)
    return atomic_save_npz(path, **arrays)


def empty_cam(size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The arrays of an image without any present class (``n = 0``)."""
    height, width = int(size[0]), int(size[1])
    return {
        "keys": np.zeros((0,), dtype=np.int64),
        "cam": np.zeros((0, *strided_size((height, width), 4)), dtype=np.float32),
        "high_res": np.zeros((0, height, width), dtype=np.float32),
    }


def load_cam(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a CAM file: ``{"keys": [n] int64, "cam": [n, ⌈H/4⌉, ⌈W/4⌉], "high_res": [n, H, W]}``."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"CAM file {path} is missing: run stage make_cam for this image list first")
    try:
        data = load_npz(path)
    except CorruptFileError as err:
        raise CorruptFileError(f"CAM file {err}; run make_cam again: it redoes broken files") from err
    missing = [k for k in CAM_KEYS if k not in data]
    if missing:
        raise CorruptFileError(f"{path} is not a CAM file: missing {missing}; run make_cam again: it redoes "
                               "broken files")
    check_finite_maps(path, data)
    return data
