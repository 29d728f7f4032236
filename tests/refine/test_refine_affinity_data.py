"""IRN's training crops: image and IR label cropped together, the label at stride 4."""

import numpy as np
import pytest
import torch

from advcam_pl.data.affinity import AffinityDataModule, AffinityDataset
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
        inside = image.abs().sum(0)[::4, ::4] > 0
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
