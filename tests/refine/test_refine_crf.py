"""Dense CRF: valid distributions, edges of the image attract label boundaries, seeds + CRF in workers."""

import sys

import numpy as np
import pytest
from PIL import Image

from advcam_pl.evaluation import confusion_matrix
from advcam_pl.refine.crf import (
    SeedCRFItems,
    crf_inference_label,
    crf_inference_prob,
    crf_seed_confusion,
    crf_seed_labels,
    evaluate_crf_seeds,
    parallel_map,
)


def two_region_image(h=32, w=48, edge_col=24):
    """Dark left part, bright right part, a sharp vertical edge at ``edge_col``."""
    img = np.full((h, w, 3), 30, np.uint8)
    img[:, edge_col:] = 220
    return img


def boundary_column(labels):
    """Mean first column of label 1 over rows."""
    return float(np.mean([np.argmax(row == 1) for row in labels]))


def test_crf_prob_returns_a_distribution_per_pixel():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
    probs = rng.random((4, 20, 24)).astype(np.float32)
    probs /= probs.sum(0, keepdims=True)
    out = crf_inference_prob(img, probs)
    assert out.shape == (4, 20, 24) and out.dtype == np.float32
    assert np.all(out >= 0)
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-4)


def test_crf_prob_moves_a_soft_boundary_to_the_image_edge():
    img = two_region_image()
    x = np.arange(48, dtype=np.float32)
    p1 = 1 / (1 + np.exp(-(x - 18) / 4))  # the map's boundary sits at 18, the image's at 24
    probs = np.stack([1 - p1, p1])[:, None, :].repeat(32, axis=1)
    before = boundary_column(probs.argmax(0))
    after = boundary_column(crf_inference_prob(img, probs).argmax(0))
    assert abs(before - 24) >= 5
    assert abs(after - 24) <= 1


def test_crf_label_snaps_a_shifted_label_boundary_to_the_image_edge():
    img = two_region_image()
    labels = np.zeros((32, 48), np.int64)
    labels[:, 20:] = 1
    out = crf_inference_label(img, labels, n_labels=2)
    assert out.shape == labels.shape
    assert abs(boundary_column(out) - 24) <= 1
    # A single label has nothing to decide.
    assert not crf_inference_label(img, np.zeros((32, 48), int), n_labels=1).any()


def test_missing_pydensecrf_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(ImportError, match="pip install pydensecrf2"):
        crf_inference_label(two_region_image(), np.zeros((32, 48), int), n_labels=2)


def seed_case(shift=0):
    img = two_region_image()
    high_res = np.zeros((1, 32, 48), np.float32)
    high_res[0, :, 20 + shift:] = 0.9  # class 6 (key 5) on the bright part, boundary off by 4 px
    return img, high_res, np.array([5])


def test_crf_seed_labels_are_voc_labels_snapped_to_edges():
    img, high_res, keys = seed_case()
    labels = crf_seed_labels(img, high_res, keys, threshold=0.3)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 6}
    assert abs(float(np.mean([np.argmax(r == 6) for r in labels])) - 24) <= 1


def square(x):
    return x * x


def test_parallel_map_keeps_order_in_worker_processes():
    assert list(parallel_map(square, range(7), num_workers=2)) == [x * x for x in range(7)]
    assert list(parallel_map(square, range(3), num_workers=0)) == [0, 1, 4]


def test_crf_seed_confusion_in_workers_equals_serial(tmp_path):
    root = tmp_path / "VOC2012"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    cam_dir = tmp_path / "cams"
    cam_dir.mkdir()
    ids = []
    for i, shift in enumerate([0, 2, -3]):
        img, high_res, keys = seed_case(shift)
        gt = np.zeros((32, 48), np.uint8)
        gt[:, 24:] = 6
        Image.fromarray(img).save(root / "JPEGImages" / f"img{i}.jpg", quality=100)
        Image.fromarray(gt, mode="L").save(root / "SegmentationClass" / f"img{i}.png")
        np.savez(cam_dir / f"img{i}.npz", keys=keys, high_res=high_res, cam=high_res[:, ::4, ::4])
        ids.append(f"img{i}")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    load = SeedCRFItems(str(root), "train", str(cam_dir))
    serial = crf_seed_confusion(ids, load, [0.3, 0.95], num_workers=0)
    parallel = crf_seed_confusion(ids, load, [0.3, 0.95], num_workers=2)
    assert serial.shape == (2, 21, 21)
    np.testing.assert_array_equal(serial, parallel)
    expected = sum(confusion_matrix(crf_seed_labels(*load(i)[:3], 0.3), load(i)[3]) for i in ids)
    np.testing.assert_array_equal(serial[0], expected)
    assert crf_seed_confusion(ids, load, 0.3).shape == (21, 21)
    # eval_cam's entry point: a reader, the CAM folder, cfg.irn.crf.
    from advcam_pl.data.voc import VOCReader

    via_reader = evaluate_crf_seeds(VOCReader(root, "train"), cam_dir, 0.3, {"t": 10, "gt_prob": 0.7})
    np.testing.assert_array_equal(via_reader, serial[0])
    # Above every CAM value the seed is all background.
    assert serial[1][:, 6].sum() == 0
