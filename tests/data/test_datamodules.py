"""LightningDataModules: batch contents, id skipping, and disjoint DDP shards for predict."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler

from advcam_pl.data.datamodules import (
    ClassificationDataModule,
    InferenceDataModule,
    SegmentationDataset,
    ShardSampler,
    collate_single,
    size_buckets,
)
from advcam_pl.data.voc import VOCReader


def test_classification_batches(synthetic_root):
    module = ClassificationDataModule(synthetic_root, batch_size=4, crop_size=48, resize_long=(40, 72))
    module.setup("fit")
    reader = VOCReader(synthetic_root, "train_aug")
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (4, 3, 48, 48) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (4, 20) and batch["label"].dtype == torch.float32
    assert isinstance(batch["id"], list) and len(batch["id"]) == 4
    for image_id, label in zip(batch["id"], batch["label"]):
        np.testing.assert_array_equal(label.numpy(), reader.labels(image_id))
    assert len(module.train_dataloader()) == 24 // 4  # drop_last

    val = list(module.val_dataloader())
    assert sum(len(b["id"]) for b in val) == 8 and val[0]["image"].shape[1:] == (3, 48, 48)


def test_classification_without_val_list(synthetic_root):
    module = ClassificationDataModule(synthetic_root, val_list=None, batch_size=64, crop_size=32)
    module.setup("fit")
    assert module.val_dataloader() == []
    assert len(module.train_dataloader()) == 1  # fewer images than a batch: the batch is kept


def test_inference_batch_holds_all_scales_of_one_image(synthetic_root):
    module = InferenceDataModule(synthetic_root, "train", scales=(1.0, 0.5, 1.5), with_mask=True)
    module.setup("predict")
    reader = VOCReader(synthetic_root, "train")
    batch = next(iter(module.predict_dataloader()))
    image = reader.load_image(batch["id"])
    height, width = image.shape[:2]
    assert batch["id"] == reader.ids[0] and batch["size"] == (height, width)
    assert [tuple(v.shape) for v in batch["images"]] == [
        (3, height, width),
        (3, int(np.round(height * 0.5)), int(np.round(width * 0.5))),
        (3, int(np.round(height * 1.5)), int(np.round(width * 1.5))),
    ]
    np.testing.assert_array_equal(batch["label"].numpy(), reader.labels(batch["id"]))
    np.testing.assert_array_equal(batch["image_uint8"], image)
    np.testing.assert_array_equal(batch["mask"], reader.load_mask(batch["id"]))


def test_inference_on_test_split_has_zero_labels(synthetic_root):
    module = InferenceDataModule(synthetic_root, "test", scales=(1.0,), with_image_uint8=False)
    module.setup("predict")
    batch = module.dataset[0]
    assert batch["label"].sum() == 0 and "image_uint8" not in batch and "mask" not in batch


def test_inference_skips_given_and_excluded_ids(synthetic_root):
    ids = VOCReader(synthetic_root, "val").ids
    module = InferenceDataModule(synthetic_root, "val", skip_ids={ids[0]}, exclude=lambda i: i in ids[5:])
    module.setup("predict")
    assert module.dataset.ids == ids[1:5]


@pytest.mark.parametrize("num_items", [0, 1, 5, 8])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shards_are_disjoint_and_cover_every_item_once(num_items, world_size):
    dataset = list(range(num_items))
    shards = [list(ShardSampler(dataset, world_size, rank)) for rank in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == dataset
    assert [len(ShardSampler(dataset, world_size, r)) for r in range(world_size)] == [len(s) for s in shards]


def test_predict_dataloader_gives_each_rank_its_shard(synthetic_root):
    module = InferenceDataModule(synthetic_root, "val", scales=(1.0,), with_image_uint8=False)
    module.setup("predict")
    seen = []
    for rank in range(3):
        module.trainer = SimpleNamespace(global_rank=rank, world_size=3)
        loader = module.predict_dataloader()
        assert isinstance(loader.sampler, DistributedSampler)  # Lightning leaves it as it is
        seen.append([batch["id"] for batch in loader])
    assert sorted(sum(seen, [])) == sorted(VOCReader(synthetic_root, "val").ids)
    assert all(len(s) in (2, 3) for s in seen)


def test_size_buckets_batch_equal_keys_and_keep_every_index_once():
    keys = ["a", "b", "a", "a", "b", "c", "a"]
    assert size_buckets(keys, 2) == [[0, 2], [1, 4], [3, 6], [5]]
    assert size_buckets(keys, 1) == [[i] for i in range(len(keys))]
    assert size_buckets([], 4) == []
    with pytest.raises(ValueError, match="batch_size"):
        size_buckets(keys, 0)


def test_batches_hold_images_of_one_size_at_every_scale(two_size_root):
    module = InferenceDataModule(two_size_root, "train", scales=(1.0, 0.5, 1.5), batch_size=4,
                                 with_image_uint8=False)
    module.setup("predict")
    batches = list(module.predict_dataloader())
    ids = [item["id"] for batch in batches for item in batch]
    assert sorted(ids) == sorted(VOCReader(two_size_root, "train").ids)  # each once
    assert all(1 <= len(batch) <= 4 for batch in batches)
    for batch in batches:
        shapes = {tuple(tuple(image.shape) for image in item["images"]) for item in batch}
        assert len(shapes) == 1
    sizes = {item["size"] for batch in batches for item in batch}
    assert len(sizes) == 2 and len(batches) <= len(ids) // 4 + 2  # at most one partial batch per size


def test_batched_shards_cover_every_image_once(two_size_root):
    module = InferenceDataModule(two_size_root, "train", scales=(1.0,), batch_size=3, with_image_uint8=False)
    module.setup("predict")
    seen = []
    for rank in range(2):
        module.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        seen += [item["id"] for batch in module.predict_dataloader() for item in batch]
    assert sorted(seen) == sorted(VOCReader(two_size_root, "train").ids)


def test_bad_batch_size_is_rejected(synthetic_root):
    with pytest.raises(ValueError, match="batch_size"):
        InferenceDataModule(synthetic_root, "val", batch_size=0)


def _ids_of(batch) -> list[str]:
    return [item["id"] for item in batch] if isinstance(batch, list) else [batch["id"]]


class _IdsModule(pl.LightningModule):
    def predict_step(self, batch, batch_idx):
        items = batch if isinstance(batch, list) else [batch]
        return [(item["id"], [tuple(image.shape) for image in item["images"]]) for item in items]


def test_trainer_predict_sees_every_image_once(synthetic_root):
    module = InferenceDataModule(synthetic_root, "val", scales=(1.0, 0.5), with_image_uint8=False)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    outputs = [pair for batch in trainer.predict(_IdsModule(), datamodule=module) for pair in batch]
    assert [image_id for image_id, _ in outputs] == VOCReader(synthetic_root, "val").ids
    assert all(len(shapes) == 2 for _, shapes in outputs)


def test_trainer_predict_sees_every_image_once_in_batches(two_size_root):
    module = InferenceDataModule(two_size_root, "train", scales=(1.0,), with_image_uint8=False, batch_size=5)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    outputs = trainer.predict(_IdsModule(), datamodule=module)
    assert sorted(i for batch in outputs for i, _ in batch) == sorted(VOCReader(two_size_root, "train").ids)
    assert max(len(batch) for batch in outputs) == 5


def test_segmentation_dataset_pairs_image_and_mask(synthetic_root):
    dataset = SegmentationDataset(synthetic_root, "val", exclude=lambda i: i.endswith("0"))
    item = next(iter(DataLoader(dataset, batch_size=1, collate_fn=collate_single)))
    assert item["image"].shape[:2] == item["mask"].shape and item["mask"].dtype == np.uint8
    assert not any(i.endswith("0") for i in dataset.ids)


class _WriteIdsModule(pl.LightningModule):
    """Appends each predicted id to ``<out_dir>/rank<r>.txt`` (what a prediction writer would do)."""

    def __init__(self, out_dir: str):
        super().__init__()
        self.out_dir = out_dir

    def predict_step(self, batch, batch_idx):
        with open(f"{self.out_dir}/rank{self.global_rank}.txt", "a") as f:
            f.write("".join(i + "\n" for i in _ids_of(batch)))


@pytest.mark.ddp
@pytest.mark.timeout(180)
@pytest.mark.parametrize(("num_ids", "batch_size"), [(3, 1), (1, 1), (7, 2)])
def test_ddp_predict_writes_every_id_exactly_once(synthetic_root, two_size_root, tmp_path, num_ids, batch_size):
    if torch.cuda.is_initialized():
        pytest.skip("cannot fork worker processes after CUDA is initialised")
    # 3 ids on 2 ranks: uneven shards, and Lightning re-wrapping our sampler would lose an id;
    # 1 id: rank 1 has nothing to do and must neither fail nor get a duplicate;
    # 7 ids of two sizes in batches of 2: uneven batches sharded, none split or repeated.
    root, split = (synthetic_root, "val") if batch_size == 1 else (two_size_root, "train")
    ids = VOCReader(root, split).ids
    module = InferenceDataModule(
        root, split, scales=(1.0,), with_image_uint8=False, skip_ids=ids[num_ids:], batch_size=batch_size
    )
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_fork", logger=False, enable_progress_bar=False,
        enable_model_summary=False,  # use_distributed_sampler stays True: Lightning must keep our sampler
    )  # fmt: skip
    trainer.predict(_WriteIdsModule(str(tmp_path)), datamodule=module, return_predictions=False)
    written = [line for path in sorted(tmp_path.glob("rank*.txt")) for line in path.read_text().split()]
    assert sorted(written) == sorted(ids[:num_ids])
