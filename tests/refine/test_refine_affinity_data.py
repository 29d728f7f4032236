"""IRN's training crops: image and IR label cropped together, the label at stride 4."""

import numpy as np
import pytest
import torch
from PIL import Image

from advcam_pl.data.affinity import AffinityDataModule, AffinityDataset, stride4_labels
from advcam_pl.data.transforms import random_crop
from advcam_pl.data.voc import VOCReader
from advcam_pl.io import atomic_save_palette_png


@pytest.fixture(scope="module")
def ir_label_dir(synthetic_root, tmp_path_factory):
    """IR labels = the GT masks (255 on boundaries) of train_aug."""
    folder = tmp_path_factory.mktemp("ir_label")
    reader = VOCReader(synthetic_root, "train_aug")
    for image_id in reader.ids:
        atomic_save_palette_png(folder / f"{image_id}.png", reader.load_mask(image_id))
    return folder


def test_crop_keeps_image_and_stride4_label_aligned(synthetic_root, ir_label_dir):
    np.random.seed(0)
    dataset = AffinityDataset(synthetic_root, "train_aug", ir_label_dir, crop_size=96, rescale=None, hflip=False)
    reader = VOCReader(synthetic_root, "train_aug")
    for index in range(4):
        item = dataset[index]
        image, label = item["image"], item["label"]
        assert image.shape == (3, 96, 96) and label.shape == (24, 24) and label.dtype == torch.long
        # The synthetic images are smaller than the crop: the canvas around them is 0 / 255.
        mask = reader.load_mask(item["id"])
        inside = image.abs().sum(0)[2::4, 2::4] > 0  # the pixels the stride-4 label samples
        assert torch.all(label[~inside] == 255)
        assert set(label[inside].unique().tolist()) <= set(np.unique(mask[::4, ::4]).tolist())


def test_rescale_and_flip_keep_label_values(synthetic_root, ir_label_dir):
    np.random.seed(1)
    dataset = AffinityDataset(synthetic_root, "train_aug", ir_label_dir, crop_size=48, rescale=(0.5, 1.5))
    reader = VOCReader(synthetic_root, "train_aug")
    for index in range(4):
        item = dataset[index]
        assert item["image"].shape == (3, 48, 48) and item["label"].shape == (12, 12)
        allowed = set(np.unique(reader.load_mask(item["id"])).tolist()) | {255}
        assert set(item["label"].unique().tolist()) <= allowed


def test_datamodule_batches_and_mean_shift_shards(synthetic_root, ir_label_dir):
    dm = AffinityDataModule(synthetic_root, "train_aug", ir_label_dir, crop_size=64, batch_size=5,
                            mean_shift_images=7)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (5, 3, 64, 64) and batch["label"].shape == (5, 16, 16)
    assert len(dm.train_dataloader()) == len(VOCReader(synthetic_root, "train_aug").ids) // 5  # drop_last
    shards = [dm.mean_shift_dataloader(rank, 2).dataset for rank in range(2)]
    assert sorted(i for s in shards for i in s.indices) == list(range(7))
    assert shards[0][0].shape == (3, 64, 64)


def test_missing_ir_labels_are_reported(synthetic_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="make_ir_label"):
        AffinityDataset(synthetic_root, "train_aug", tmp_path)


def test_stride4_labels_sample_like_irns_pil_nearest():
    label = np.random.default_rng(0).integers(0, 256, (24, 36), dtype=np.uint8)
    irn = np.asarray(Image.fromarray(label).resize((36 // 4, 24 // 4), Image.NEAREST))  # pil_rescale(label, 0.25, 0)
    np.testing.assert_array_equal(stride4_labels(label), irn)
    assert not np.array_equal(label[::4, ::4], irn)  # pixel 4i is not what IRN trains on
    with pytest.raises(ValueError, match="multiples of 4"):
        stride4_labels(label[:, :35])


def test_dataset_label_is_the_stride4_sample_of_the_cropped_label(synthetic_root, ir_label_dir, tmp_path):
    dataset = AffinityDataset(synthetic_root, "train_aug", ir_label_dir, crop_size=32, rescale=None, hflip=False)
    image_id = dataset.ids[0]
    height, width = dataset.reader.load_image(image_id).shape[:2]
    # Every pixel of a 4x4 cell holds a different value, so the sampled position shows in the label.
    pattern = (np.arange(height)[:, None] % 4 * 4 + np.arange(width)[None, :] % 4).astype(np.uint8)
    atomic_save_palette_png(tmp_path / f"{image_id}.png", pattern)
    dataset.ir_label_dir = tmp_path
    np.random.seed(3)
    label = dataset[0]["label"].numpy()
    np.random.seed(3)  # the same random crop window (the dataset draws nothing else without rescale/flip)
    _, crop = random_crop([np.zeros((height, width, 3), np.float32), pattern], 32, [0.0, 255])
    assert label.shape == (8, 8)
    np.testing.assert_array_equal(label, crop[2::4, 2::4])
