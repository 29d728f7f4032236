"""The synthetic VOC-layout generator: determinism, layout, labels, the body/head design, the CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from advcam_pl.data import synthetic
from advcam_pl.data.synthetic import DEFAULT_CLASSES, add_boundary_band, generate_dataset, summary
from advcam_pl.data.voc import CLASS_NAMES, VOCReader, labels_from_mask

TINY = dict(num_train=5, num_val=2, num_test=2, long_side=(40, 56))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_trees_other_seed_differs(tmp_path):
    generate_dataset(tmp_path / "a", seed=3, **TINY)
    generate_dataset(tmp_path / "b", seed=3, **TINY)
    generate_dataset(tmp_path / "c", seed=4, **TINY)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    jpegs = [name for name in a if name.endswith(".jpg")]
    assert len(jpegs) == 9 and all(a[name] != c[name] for name in jpegs)


def test_refuses_to_overwrite_a_finished_tree(tmp_path):
    generate_dataset(tmp_path, **TINY)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_dataset(tmp_path, **TINY)
    generate_dataset(tmp_path, overwrite=True, **TINY)


def test_splits_follow_voc(synthetic_root):
    train_aug, train = VOCReader(synthetic_root, "train_aug"), VOCReader(synthetic_root, "train")
    val, test = VOCReader(synthetic_root, "val"), VOCReader(synthetic_root, "test")
    assert (len(train_aug), len(train), len(val), len(test)) == (24, 12, 8, 4)
    assert set(train.ids) < set(train_aug.ids)
    assert not set(val.ids) & set(train_aug.ids) and not set(test.ids) & (set(val.ids) | set(train_aug.ids))
    for image_id in test.ids:
        assert reader_files(synthetic_root, image_id) == {"JPEGImages"}
    for image_id in train.ids + val.ids:
        assert reader_files(synthetic_root, image_id) == {
            "JPEGImages", "Annotations", "SegmentationClass", "SegmentationClassAug"
        }  # fmt: skip
    sbd_only = sorted(set(train_aug.ids) - set(train.ids))
    assert reader_files(synthetic_root, sbd_only[0]) == {"JPEGImages", "Annotations", "SegmentationClassAug"}


def reader_files(root: Path, image_id: str) -> set[str]:
    return {p.parent.name for p in root.glob(f"*/{image_id}.*")}


def test_masks_carry_a_void_band_like_voc(synthetic_root):
    train_aug, train = VOCReader(synthetic_root, "train_aug"), VOCReader(synthetic_root, "train")
    voc_mask = train.load_mask(train.ids[0])
    assert 255 in voc_mask
    np.testing.assert_array_equal(train_aug.load_mask(train.ids[0]), voc_mask)  # as VOC ids in SBD
    sbd_only = sorted(set(train_aug.ids) - set(train.ids))
    assert all(255 not in train_aug.load_mask(i) for i in sbd_only)


def test_images_are_landscape_and_portrait_within_the_size_range(synthetic_root):
    reader = VOCReader(synthetic_root, "train_aug")
    shapes = [reader.load_image(i).shape for i in reader.ids]
    assert all(48 <= max(h, w) <= 64 and c == 3 for h, w, c in shapes)
    assert any(h > w for h, w, _ in shapes) and any(w > h for h, w, _ in shapes)
    for image_id in reader.ids[:4]:
        assert reader.load_mask(image_id).shape == reader.load_image(image_id).shape[:2]


def test_xml_labels_match_mask_classes(synthetic_root):
    for split in ("train_aug", "val"):
        reader = VOCReader(synthetic_root, split)
        for image_id in reader.ids:
            xml_labels = reader.labels(image_id)
            assert 1 <= xml_labels.sum() <= 3
            np.testing.assert_array_equal(
                xml_labels, labels_from_mask(reader.load_mask(image_id)), err_msg=image_id
            )
            assert {CLASS_NAMES[i] for i in np.flatnonzero(xml_labels)} <= set(DEFAULT_CLASSES)


def test_objects_have_a_head_part_smaller_than_the_object(synthetic_root):
    reader = VOCReader(synthetic_root, "train_aug")
    ratios, headless = [], 0
    for image_id in reader.ids:
        for obj in ET.parse(reader.annotation_path(image_id)).getroot().iter("object"):
            assert obj.findtext("difficult") in ("0", "1") and obj.findtext("truncated") in ("0", "1")
            head = obj.find("part/bndbox")
            if head is None:  # head hidden by another object or outside the picture
                headless += 1
                continue
            assert obj.findtext("part/name") == "head"
            box = [int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            head_box = [int(head.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            area = lambda b: (b[2] - b[0] + 1) * (b[3] - b[1] + 1)  # noqa: E731
            ratios.append(area(head_box) / area(box))
    assert len(ratios) >= 4 * headless
    assert max(ratios) <= 1.0 and np.median(ratios) < 0.35


def test_body_is_shared_by_a_family_head_is_per_class():
    styles = synthetic.class_styles(DEFAULT_CLASSES, classes_per_body=2)
    for first, second in zip(styles[0::2], styles[1::2]):
        assert (first.body_rgb, first.body_texture) == (second.body_rgb, second.body_texture)
    heads = {(s.head_rgb, s.head_pattern) for s in styles}
    bodies = {(s.body_rgb, s.body_texture) for s in styles}
    assert len(heads) == len(styles) and len(bodies) == len(styles) // 2


def test_boundary_band_marks_both_sides_of_every_edge():
    mask = np.zeros((9, 9), np.uint8)
    mask[2:7, 2:7] = 3
    banded = add_boundary_band(mask, radius=1)
    assert banded[4, 4] == 3 and banded[0, 0] == 0
    assert banded[2, 4] == 255 and banded[1, 4] == 255 and banded[3, 4] == 3


def test_summary_counts_splits_and_classes(synthetic_root):
    counts = summary(synthetic_root)["splits"]
    assert (
        counts["train_aug"]["images"] == counts["train_aug"]["masks"] == counts["train_aug"]["labelled"] == 24
    )
    assert counts["test"] == {"images": 4, "masks": 0, "labelled": 0, "class_images": {}}
    assert sum(counts["val"]["class_images"].values()) >= 8
    stored = json.loads((synthetic_root / "synthetic.json").read_text())
    assert stored["splits"] == summary(synthetic_root)["splits"] and stored["params"]["num_train"] == 24


def test_cli_generates_and_summarises(tmp_path, capsys):
    out = tmp_path / "syn"
    argv = ["--out", str(out), "--seed", "1", "--num-train", "3", "--num-val", "1", "--num-test", "1"]
    assert synthetic.main([*argv, "--long-side", "40", "48", "--classes", "cat,dog"]) == 0
    assert synthetic.main(["--summary", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train_aug" in printed and "cat" in printed and "aeroplane" not in printed
    assert set(summary(out)["splits"]["train_aug"]["class_images"]) <= {"cat", "dog"}


def test_rejects_unknown_class_names(tmp_path):
    with pytest.raises(ValueError, match="class names"):
        generate_dataset(tmp_path, classes=("cat", "unicorn"), **TINY)


def test_no_test_images_means_no_test_list(tmp_path):
    counts = generate_dataset(tmp_path, num_train=2, num_val=1, num_test=0, long_side=(32, 40))
    assert list(counts["splits"]) == ["train_aug", "train", "val"]
    assert not (tmp_path / "ImageSets/Segmentation/test.txt").exists()
