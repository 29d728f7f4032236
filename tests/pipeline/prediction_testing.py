"""Checks of what eval_seg and eval_semi write, shared by their stage tests."""

from __future__ import annotations

import tarfile
from pathlib import Path

from PIL import Image

from advcam_pl.data.voc import VOCReader


def assert_predictions_written(pred_dir: Path, root: Path, archive: str, folders=("val", "val_no_crf")) -> Path:
    """Every val id has a PNG in each of ``folders``; every test id a palette PNG of its image's size
    in the server folder, all of them in ``archive``. Returns the server folder."""
    val_ids, test_ids = VOCReader(root, "val").ids, VOCReader(root, "test").ids
    for folder in folders:
        assert sorted(p.stem for p in (pred_dir / folder).glob("*.png")) == sorted(val_ids), folder
    server = pred_dir / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls"
    assert sorted(p.stem for p in server.glob("*.png")) == sorted(test_ids)
    with Image.open(server / f"{test_ids[0]}.png") as png:
        assert png.mode == "P"
        assert png.size == Image.open(root / "JPEGImages" / f"{test_ids[0]}.jpg").size
    with tarfile.open(archive) as tar:
        assert len(tar.getnames()) == len(test_ids)
    return server
