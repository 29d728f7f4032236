import numpy as np
import pytest

from advcam_pl.evaluation import confusion_matrix, miou_from_confusion, seed_labels, sweep_thresholds


def make_items(seed, n=5):
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        h, w = rng.integers(8, 20, size=2)
        keys = np.sort(rng.choice(20, size=rng.integers(1, 3), replace=False))
        gt = np.zeros((h, w), dtype=np.uint8)
        high_res = rng.random((len(keys), h, w)).astype(np.float32) ** 2
        for i, k in enumerate(keys):
            region = high_res[i] > 0.4 + 0.1 * i
            gt[region] = k + 1
        high_res /= high_res.max(axis=(1, 2), keepdims=True) + 1e-5
        gt[rng.random((h, w)) < 0.05] = 255
        items.append((high_res, keys, gt))
    return items


def test_seed_labels_maps_argmax_back_to_voc_labels():
    high_res = np.array([[[0.9, 0.1]], [[0.2, 0.05]]], dtype=np.float32)
    labels = seed_labels(high_res, np.array([4, 11]), threshold=0.15)
    assert labels.tolist() == [[5, 0]]


@pytest.mark.parametrize("seed", [0, 3])
def test_sweep_picks_the_threshold_a_brute_force_check_picks(seed):
    items = make_items(seed)
    thresholds = np.round(np.arange(0.05, 0.7, 0.05), 3).tolist()
    result = sweep_thresholds(iter(items), thresholds)
    brute = []
    for t in thresholds:
        conf = sum(confusion_matrix(seed_labels(h, k, t), g) for h, k, g in items)
        brute.append(miou_from_confusion(conf))
    assert result["best_threshold"] == thresholds[int(np.argmax(brute))]
    np.testing.assert_allclose(result["miou"], brute)
    assert result["num_images"] == len(items)


def test_sweep_without_images_is_an_error():
    with pytest.raises(ValueError, match="no images"):
        sweep_thresholds(iter([]), [0.1])
