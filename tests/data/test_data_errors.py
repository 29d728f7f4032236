"""Bad inputs: each error names the path or file at fault; skip_bad skips and logs instead."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advcam_pl.data.datamodules import ClassificationDataModule, InferenceDataModule, SegmentationDataset
from advcam_pl.data.voc import VOCDataError, VOCLayoutError, VOCReader
from advcam_pl.io import palette_image


@pytest.fixture
def voc_copy(tmp_path, synthetic_root) -> Path:
    """A writable copy of the session's synthetic tree."""
    root = tmp_path / "VOC2012"
    shutil.copytree(synthetic_root, root)
    return root


def test_missing_root_names_it_and_shows_the_layout(tmp_path):
    with pytest.raises(VOCLayoutError, match="nowhere") as err:
        VOCReader(tmp_path / "nowhere", "train")
    assert "ImageSets/Segmentation/<split>.txt" in str(err.value)


def test_missing_image_folder_names_it_and_hints_at_voc2012(tmp_path, voc_copy):
    with pytest.raises(VOCLayoutError, match="JPEGImages") as err:
        VOCReader(tmp_path, "train")  # the folder above VOC2012, a common mistake
    assert "did you mean" in str(err.value) and "VOC2012" in str(err.value)


def test_missing_list_file_names_it(voc_copy):
    with pytest.raises(VOCLayoutError, match=r"ImageSets/Segmentation/trainval\.txt"):
        VOCReader(voc_copy, "trainval")


def test_empty_list_file_is_an_error(voc_copy):
    (voc_copy / "ImageSets/Segmentation/empty.txt").write_text("\n")
    with pytest.raises(VOCLayoutError, match="empty"):
        VOCReader(voc_copy, "empty")


def test_train_aug_without_sbd_masks_names_the_folder(voc_copy):
    shutil.rmtree(voc_copy / "SegmentationClassAug")
    with pytest.raises(VOCLayoutError, match="SegmentationClassAug"):
        VOCReader(voc_copy, "train_aug")


def test_unreadable_image_names_the_file(voc_copy):
    reader = VOCReader(voc_copy, "val")
    bad = reader.image_path(reader.ids[1])
    bad.write_bytes(b"not a jpeg")
    dataset = InferenceDataModule(voc_copy, "val", scales=(1.0,))
    dataset.setup("predict")
    with pytest.raises(VOCDataError, match=re.escape(str(bad))):
        dataset.dataset[1]


def test_truncated_image_names_the_file(voc_copy):
    reader = VOCReader(voc_copy, "val")
    bad = reader.image_path(reader.ids[0])
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(VOCDataError, match=re.escape(str(bad))):
        reader.load_image(reader.ids[0])


def test_missing_image_names_the_file(voc_copy):
    reader = VOCReader(voc_copy, "val")
    reader.image_path(reader.ids[0]).unlink()
    with pytest.raises(VOCDataError, match=re.escape(str(reader.image_path(reader.ids[0])))):
        reader.load_image(reader.ids[0])


def test_mask_value_outside_voc_range_names_the_file(voc_copy):
    reader = VOCReader(voc_copy, "val")
    path = reader.mask_path(reader.ids[0])
    mask = reader.load_mask(reader.ids[0])
    mask[0, 0] = 21
    palette_image(mask).save(path)
    with pytest.raises(VOCDataError, match=re.escape(str(path)) + r".*\[21\]"):
        reader.load_mask(reader.ids[0])


def test_rgb_mask_is_rejected_not_converted(voc_copy):
    reader = VOCReader(voc_copy, "val")
    path = reader.mask_path(reader.ids[0])
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(VOCDataError, match=re.escape(str(path)) + ".*mode 'RGB'"):
        reader.load_mask(reader.ids[0])


def test_unreadable_mask_names_the_file(voc_copy):
    reader = VOCReader(voc_copy, "val")
    path = reader.mask_path(reader.ids[0])
    path.write_bytes(b"\x89PNG broken")
    with pytest.raises(VOCDataError, match=re.escape(str(path))):
        reader.load_mask(reader.ids[0])


def test_mask_of_another_size_names_both_files(voc_copy):
    reader = VOCReader(voc_copy, "val")
    image_id = reader.ids[0]
    palette_image(np.zeros((5, 7), np.uint8)).save(reader.mask_path(image_id))
    with pytest.raises(VOCDataError, match=re.escape(str(reader.image_path(image_id)))):
        SegmentationDataset(voc_copy, "val")[0]


def test_skip_bad_drops_unreadable_items_and_logs_their_ids(voc_copy, caplog):
    reader = VOCReader(voc_copy, "val")
    bad_image, bad_mask = reader.ids[1], reader.ids[3]
    reader.image_path(bad_image).write_bytes(b"garbage")
    mask = reader.load_mask(bad_mask)
    mask[0, 0] = 99
    palette_image(mask).save(reader.mask_path(bad_mask))

    with caplog.at_level(logging.WARNING, logger="advcam_pl.data.datamodules"):
        module = InferenceDataModule(voc_copy, "val", scales=(1.0,), skip_bad=True, with_mask=True)
        module.setup("predict")
    assert module.dataset.ids == [i for i in reader.ids if i not in (bad_image, bad_mask)]
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "skipping 2" in warning and bad_image in warning and bad_mask in warning

    # without masks, the bad mask does not matter
    images_only = InferenceDataModule(voc_copy, "val", scales=(1.0,), skip_bad=True)
    images_only.setup("predict")
    assert bad_mask in images_only.dataset.ids and bad_image not in images_only.dataset.ids


def test_skip_bad_in_classification_and_segmentation_sets(voc_copy):
    reader = VOCReader(voc_copy, "train_aug")
    reader.image_path(reader.ids[0]).write_bytes(b"")
    module = ClassificationDataModule(
        voc_copy, batch_size=2, crop_size=32, resize_long=(32, 48), skip_bad=True
    )
    module.setup("fit")
    assert reader.ids[0] not in module.train_set.ids and len(module.train_set) == len(reader) - 1
    assert len(SegmentationDataset(voc_copy, "train_aug", skip_bad=True)) == len(reader) - 1
    strict = ClassificationDataModule(voc_copy, batch_size=2, crop_size=32, resize_long=(32, 48))
    strict.setup("fit")
    with pytest.raises(VOCDataError, match=re.escape(str(reader.image_path(reader.ids[0])))):
        strict.train_set[0]
