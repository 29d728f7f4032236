"""VOC evaluation-server export: folder names, palette PNGs, the archive, the wide table."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
from PIL import Image

from advcam_pl.evaluation.export import (
    VOC_SHORT_NAMES,
    check_submission,
    make_archive,
    missing_predictions,
    server_dir,
    wide_iou_table,
    write_prediction,
)
from advcam_pl.io import voc_palette


def test_server_folder_names(tmp_path):
    assert server_dir(tmp_path) == tmp_path / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls"
    assert server_dir(tmp_path, "comp5").name == "comp5_test_cls"
    with pytest.raises(ValueError, match="competition"):
        server_dir(tmp_path, "comp7")


def test_predictions_are_palette_pngs_in_the_server_layout(tmp_path):
    labels = np.zeros((5, 7), dtype=np.uint8)
    labels[1:3, 2:6] = 15
    labels[4, :] = 20
    path = write_prediction(tmp_path, "2008_000001", labels, "comp6")
    assert path == tmp_path / "results/VOC2012/Segmentation/comp6_test_cls/2008_000001.png"
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[: 3 * 21] == voc_palette()[: 3 * 21]
        np.testing.assert_array_equal(np.asarray(image), labels)
    assert [p.name for p in path.parent.iterdir()] == ["2008_000001.png"]  # no temp file left
    with pytest.raises(ValueError, match="labels 0-20"):
        write_prediction(tmp_path, "bad", np.full((2, 2), 255, dtype=np.uint8))


def test_check_submission_and_archive(tmp_path):
    ids = ["a", "b"]
    write_prediction(tmp_path, "a", np.zeros((4, 6), dtype=np.uint8))
    assert missing_predictions(tmp_path, ids) == ["b"]
    with pytest.raises(ValueError, match="1 of 2 predictions missing"):
        check_submission(tmp_path, ids)
    write_prediction(tmp_path, "b", np.ones((3, 3), dtype=np.uint8))
    check_submission(tmp_path, ids, sizes={"a": (4, 6), "b": (3, 3)})
    with pytest.raises(ValueError, match="the image is"):
        check_submission(tmp_path, ids, sizes={"a": (5, 6)})

    archive = make_archive(tmp_path, "comp6")
    assert archive == tmp_path / "results_comp6_test.tar.gz"
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == [
            "results/VOC2012/Segmentation/comp6_test_cls/a.png",
            "results/VOC2012/Segmentation/comp6_test_cls/b.png",
        ]


def test_rgb_prediction_is_rejected(tmp_path):
    folder = server_dir(tmp_path)
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(folder / "x.png")
    with pytest.raises(ValueError, match="palette PNG"):
        check_submission(tmp_path, ["x"])


def test_wide_table_has_the_paper_columns():
    iou = np.linspace(0.5, 0.9, 21)
    iou[3] = np.nan
    table = wide_iou_table({"AdvCAM": iou})
    header, row = table.splitlines()
    assert header.split() == ["method", *VOC_SHORT_NAMES, "mIoU"]
    cells = row.split()
    assert cells[0] == "AdvCAM" and cells[1] == "50.0" and cells[4] == "-" and cells[21] == "90.0"
    assert cells[-1] == f"{100 * np.nanmean(iou):.1f}"
    assert len(VOC_SHORT_NAMES) == 21 and VOC_SHORT_NAMES[0] == "bkg"
