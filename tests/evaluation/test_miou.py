import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from advcam_pl.evaluation import (
    ConfusionMatrix,
    MeanIoU,
    confusion_matrix,
    iou_from_confusion,
    miou_from_confusion,
    per_class_table,
)


def random_labels(rng, shape, ignore_fraction=0.1):
    gt = rng.integers(0, 21, size=shape)
    gt[rng.random(shape) < ignore_fraction] = 255
    pred = np.where(rng.random(shape) < 0.6, gt, rng.integers(0, 21, size=shape))
    pred[pred == 255] = 0
    return pred.astype(np.uint8), gt.astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_miou_matches_torchmetrics_on_random_data(seed):
    rng = np.random.default_rng(seed)
    conf = ConfusionMatrix()
    metric = MulticlassJaccardIndex(num_classes=21, ignore_index=255, average="none")
    for _ in range(4):
        pred, gt = random_labels(rng, (37, 53))
        conf.update(pred, gt)
        metric.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(gt.astype(np.int64)))
    expected = metric.compute().numpy()
    np.testing.assert_allclose(conf.iou, expected, rtol=1e-6, atol=1e-7)
    assert conf.miou == pytest.approx(float(expected.mean()), rel=1e-6)


def test_ignored_pixels_are_not_counted():
    gt = np.array([[0, 1], [255, 255]], dtype=np.uint8)
    pred = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    conf = confusion_matrix(pred, gt)
    assert conf.sum() == 2
    assert miou_from_confusion(conf) == 1.0


def test_absent_classes_do_not_count_in_the_mean():
    gt = np.array([[0, 0, 1, 1]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1]], dtype=np.uint8)
    iou = iou_from_confusion(confusion_matrix(pred, gt))
    assert iou[0] == pytest.approx(0.5) and iou[1] == pytest.approx(2 / 3)
    assert np.isnan(iou[2:]).all()
    assert miou_from_confusion(confusion_matrix(pred, gt)) == pytest.approx((0.5 + 2 / 3) / 2)


def test_shape_mismatch_and_out_of_range_labels_are_errors():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="prediction labels"):
        confusion_matrix(np.full((2, 2), 21), np.zeros((2, 2)))


def test_per_class_table_lists_every_class_and_the_mean():
    names = [f"c{i}" for i in range(3)]
    table = per_class_table(np.array([0.5, np.nan, 1.0]), names)
    lines = table.splitlines()
    assert any(line.startswith("c0") and "50.00" in line for line in lines)
    assert any(line.startswith("c1") and line.rstrip().endswith("-") for line in lines)
    assert lines[-1].startswith("mIoU") and "75.00" in lines[-1]


def test_the_lightning_metric_accumulates_the_same_confusion_as_the_numpy_one():
    rng = np.random.default_rng(0)
    numpy_conf, metric = ConfusionMatrix(), MeanIoU()
    for _ in range(3):
        gt = rng.integers(0, 6, (2, 9, 11))
        gt[:, :2] = 255
        pred = rng.integers(0, 6, (2, 9, 11))
        metric.update(torch.from_numpy(pred), torch.from_numpy(gt))
        for p, g in zip(pred, gt):
            numpy_conf.update(p, g)
    assert metric.compute().item() == pytest.approx(numpy_conf.miou)
    assert metric.confusion.numpy().tolist() == numpy_conf.matrix.tolist()
    metric.reset()
    assert metric.confusion.sum() == 0
