"""CAM files: one ``<id>.npz`` per image with ``keys`` [n] int64, ``cam`` and ``high_res`` float32.

Every stage reads and writes them through this module (``cam_path`` + ``load_cam`` / ``save_cam``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from advcam_pl.advcam.aggregate import strided_size
from advcam_pl.io import atomic_save_npz, load_npz

CAM_KEYS = ("keys", "cam", "high_res")
CAM_SUFFIX = ".npz"


def cam_path(cam_dir: str | os.PathLike, image_id: str) -> Path:
    return Path(cam_dir) / f"{image_id}{CAM_SUFFIX}"


def save_cam(path: str | os.PathLike, keys: np.ndarray, cam: np.ndarray, high_res: np.ndarray) -> Path:
    """Write one CAM file atomically (temp name + rename), with the dtypes of the contract."""
    return atomic_save_npz(
        path,
        keys=np.asarray(keys, dtype=np.int64),
        cam=np.asarray(cam, dtype=np.float32),
        high_res=np.asarray(high_res, dtype=np.float32),
    )


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
    data = load_npz(path)
    missing = [k for k in CAM_KEYS if k not in data]
    if missing:
        raise KeyError(f"{path} is not a CAM file: missing {missing}")
    return data
