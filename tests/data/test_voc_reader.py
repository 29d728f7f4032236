"""VOCReader on real PASCAL VOC 2012 files (../shared/fixtures/voc2012_real) and on a synthetic tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advcam_pl.data.voc import CLASS_NAMES, CLASS_NAMES_BG, VOCReader, labels_from_mask

# Path(__file__).parents[2] is the repo; CI runs a clean clone with ../shared beside it.
VOC_REAL = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "voc2012_real"
IRN_LABELS = VOC_REAL.parent / "voc12_lists" / "cls_labels.npy"
needs_real_voc = pytest.mark.skipif(
    not VOC_REAL.is_dir(),
    reason=f"real VOC fixtures not found at {VOC_REAL} (clone with ../shared beside the repo)",
)


def irn_labels() -> dict[str, np.ndarray]:
    """IRN's cls_labels.npy, keyed by VOC id ('2007_000033' is stored as the int 2007000033)."""
    table = np.load(IRN_LABELS, allow_pickle=True).item()
    return {f"{int(k) // 1000000}_{int(k) % 1000000:06d}": v for k, v in table.items()}


def test_class_names_are_voc_order():
    assert len(CLASS_NAMES) == 20 and CLASS_NAMES[0] == "aeroplane" and CLASS_NAMES[-1] == "tvmonitor"
    assert CLASS_NAMES[11] == "dog" and CLASS_NAMES[14] == "person"
    assert CLASS_NAMES_BG[0] == "background" and CLASS_NAMES_BG[1:] == CLASS_NAMES


@needs_real_voc
def test_ids_come_from_the_split_list_in_order():
    reader = VOCReader(VOC_REAL, "sample_train")
    listed = (VOC_REAL / "ImageSets/Segmentation/sample_train.txt").read_text().split()
    assert reader.ids == listed and len(reader) == 8 and reader.ids[0] == "2007_000039"


@needs_real_voc
def test_real_masks_are_palette_indices_with_void_boundary():
    reader = VOCReader(VOC_REAL, "sample_val")
    image, mask = reader.load_image("2007_000033"), reader.load_mask("2007_000033")
    assert image.dtype == np.uint8 and image.shape == (366, 500, 3)
    assert mask.dtype == np.uint8 and mask.shape == (366, 500)
    # 2007_000033: aeroplanes (index 1) with the 255 boundary, not RGB-derived values
    assert set(np.unique(mask).tolist()) == {0, 1, 255}
    assert reader.mask_path("2007_000033").parent.name == "SegmentationClass"


@needs_real_voc
def test_labels_match_irn_cls_labels_for_every_fixture_id():
    table = irn_labels()
    for split in ("sample", "sample_sbd_only"):
        reader = VOCReader(VOC_REAL, split)
        for image_id in reader.ids:
            np.testing.assert_array_equal(reader.labels(image_id), table[image_id], err_msg=image_id)


@needs_real_voc
def test_labels_from_xml_name_every_object_class():
    reader = VOCReader(VOC_REAL, "sample_train")
    assert reader.annotation_path("2007_000063").is_file()
    labels = reader.labels("2007_000063")
    assert labels.dtype == np.float32 and labels.shape == (20,)
    assert [CLASS_NAMES[i] for i in np.flatnonzero(labels)] == ["chair", "dog"]


@needs_real_voc
def test_labels_fall_back_to_mask_classes_without_xml():
    reader = VOCReader(VOC_REAL, "sample_val")
    assert not reader.annotation_path("2007_000033").exists()
    np.testing.assert_array_equal(
        reader.labels("2007_000033"), labels_from_mask(reader.load_mask("2007_000033"))
    )
    assert np.flatnonzero(reader.labels("2007_000033")).tolist() == [0]  # aeroplane


@needs_real_voc
def test_mask_falls_back_to_segmentation_class_aug():
    reader = VOCReader(VOC_REAL, "sample_sbd_only")  # SBD-only ids: no SegmentationClass file
    for image_id in reader.ids:
        assert not (VOC_REAL / "SegmentationClass" / f"{image_id}.png").exists()
        assert reader.has_mask(image_id)
        assert reader.mask_path(image_id).parent.name == "SegmentationClassAug"
        mask = reader.load_mask(image_id)
        assert mask.shape == reader.load_image(image_id).shape[:2] and 255 not in mask


def _tree_with_xml(tmp_path: Path, xml_objects: str) -> VOCReader:
    """A one-image VOC tree around a real JPEG and mask with a hand-written annotation."""
    for folder in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation"):
        (tmp_path / folder).mkdir(parents=True)
    shutil.copy(VOC_REAL / "JPEGImages/2007_000063.jpg", tmp_path / "JPEGImages/x.jpg")
    shutil.copy(VOC_REAL / "SegmentationClass/2007_000063.png", tmp_path / "SegmentationClass/x.png")
    (tmp_path / "Annotations/x.xml").write_text(
        f"<annotation><filename>x.jpg</filename>{xml_objects}</annotation>"
    )
    (tmp_path / "ImageSets/Segmentation/val.txt").write_text("x\n")
    return VOCReader(tmp_path, "val")


@needs_real_voc
def test_xml_labels_include_difficult_objects_and_skip_part_names(tmp_path):
    reader = _tree_with_xml(
        tmp_path,
        "<object><name>person</name><difficult>1</difficult>"
        "<part><name>head</name></part><part><name>hand</name></part></object>"
        "<object><name> bottle </name><difficult>0</difficult></object>"
        "<object><name>unicorn</name></object>",
    )
    assert [CLASS_NAMES[i] for i in np.flatnonzero(reader.labels("x"))] == ["bottle", "person"]


def test_train_aug_reads_augmented_masks_other_splits_voc_masks(synthetic_root):
    train_aug, train = VOCReader(synthetic_root, "train_aug"), VOCReader(synthetic_root, "train")
    image_id = train.ids[0]
    assert train_aug.mask_path(image_id).parent.name == "SegmentationClassAug"
    assert train.mask_path(image_id).parent.name == "SegmentationClass"
    assert VOCReader(synthetic_root, "val", mask_dir="SegmentationClassAug").mask_path("x").parent.name == (
        "SegmentationClassAug"
    )


def test_test_split_has_images_but_no_masks_or_labels(synthetic_root):
    reader = VOCReader(synthetic_root, "test")
    image_id = reader.ids[0]
    assert reader.load_image(image_id).ndim == 3
    assert not reader.has_mask(image_id) and not reader.has_labels(image_id)


def test_deeplab_style_list_lines_give_ids(tmp_path, synthetic_root):
    root = tmp_path / "voc"
    shutil.copytree(synthetic_root, root)
    ids = VOCReader(root, "val").ids
    lines = "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids)
    (root / "ImageSets/Segmentation/val_paths.txt").write_text(lines)
    assert VOCReader(root, "val_paths").ids == ids


def test_grayscale_l_masks_read_as_indices(tmp_path, synthetic_root):
    root = tmp_path / "voc"
    shutil.copytree(synthetic_root, root)
    reader = VOCReader(root, "val")
    image_id = reader.ids[0]
    expected = reader.load_mask(image_id)
    Image.fromarray(expected).convert("L").save(reader.mask_path(image_id))  # the DrSleep-zip style
    np.testing.assert_array_equal(reader.load_mask(image_id), expected)
