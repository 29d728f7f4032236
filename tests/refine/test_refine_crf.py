"""Dense CRF: valid distributions, edges of the image attract label boundaries, seeds + CRF in workers."""

import sys

import numpy as np
import pytest
from PIL import Image

from advcam_pl.evaluation import confusion_matrix
from advcam_pl.refine.crf import (
    crf_inference_label,
    crf_inference_prob,
    crf_seed_confusion,
    crf_seed_labels,
    parallel_map,
    write_label_pngs,
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


def test_parallel_map_reads_a_generator_lazily():
    consumed = []

    def items():
        for x in range(20):
            consumed.append(x)
            yield x

    results = parallel_map(square, items(), num_workers=2)
    assert next(results) == 0 and len(consumed) <= 5  # at most 2 · workers ahead
    assert list(results) == [x * x for x in range(1, 20)]
    assert list(parallel_map(divmod, [(7, 2), (9, 4)], unpack=True)) == [(3, 1), (2, 1)]


def test_crf_seed_confusion_in_workers_equals_serial():
    items = []
    for shift in [0, 2, -3]:
        img, high_res, keys = seed_case(shift)
        gt = np.zeros((32, 48), np.uint8)
        gt[:, 24:] = 6
        items.append((img, high_res, keys, gt))
    serial = crf_seed_confusion(items, [0.3, 0.95], num_workers=0)
    parallel = crf_seed_confusion(iter(items), [0.3, 0.95], num_workers=2, total=len(items))
    assert serial.shape == (2, 21, 21)
    np.testing.assert_array_equal(serial, parallel)
    expected = sum(confusion_matrix(crf_seed_labels(img, high_res, keys, 0.3), gt)
                   for img, high_res, keys, gt in items)
    np.testing.assert_array_equal(serial[0], expected)
    assert crf_seed_confusion(items, 0.3).shape == (21, 21)
    # Above every CAM value the seed is all background.
    assert serial[1][:, 6].sum() == 0


def test_write_label_pngs_before_and_after_crf(tmp_path):
    img = two_region_image()
    x = np.arange(48, dtype=np.float32)
    p1 = 1 / (1 + np.exp(-(x - 18) / 4))
    probs = np.stack([1 - p1, p1])[:, None, :].repeat(32, axis=1)
    targets = {"final": tmp_path / "final.png", "no_crf": tmp_path / "raw.png"}
    write_label_pngs(img, probs, {}, targets)
    with Image.open(targets["no_crf"]) as raw, Image.open(targets["final"]) as final:
        assert raw.mode == final.mode == "P"
        np.testing.assert_array_equal(np.array(raw), probs.argmax(0))
        np.testing.assert_array_equal(np.array(final), crf_inference_prob(img, probs).argmax(0))
    write_label_pngs(img, probs, None, {"final": tmp_path / "plain.png"})
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "plain.png")), probs.argmax(0))


def test_crf_workers_import_numpy_not_torch():
    """A spawned CRF worker imports the job's modules; torch would cost each worker seconds."""
    import os
    import subprocess
    import sys

    code = ("import sys, advcam_pl.refine.crf, advcam_pl.evaluation; "
            "from advcam_pl.evaluation import confusion_matrix; print('torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
