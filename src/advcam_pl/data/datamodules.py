"""Datasets and LightningDataModules over :class:`~advcam_pl.data.voc.VOCReader`.

- :class:`ClassificationDataModule`: image-level labels for the CAM classifier (fit / validate).
- :class:`InferenceDataModule`: images at several scales for CAM / AdvCAM (predict), one per step
  or a batch of images of one size (:func:`size_buckets`). Under DDP every rank gets a disjoint
  shard, each id exactly once.
- :class:`SegmentationDataset`: (image, mask) pairs for evaluation.

``skip_bad=True`` checks every file once in ``setup`` and drops the ids whose image, mask or labels
cannot be read, listing them in a ``logging.warning``; otherwise a bad file raises
:class:`~advcam_pl.data.voc.VOCDataError` naming it when the item is loaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from advcam_pl.data.transforms import (
    ClassificationEvalTransform,
    ClassificationTrainTransform,
    multiscale_images,
    scaled_size,
)
from advcam_pl.data.voc import NUM_CLASSES, VOCDataError, VOCReader

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Checking and selecting ids
# ---------------------------------------------------------------------------------------------
def find_bad_ids(
    reader: VOCReader, ids: Sequence[str], need_mask: bool = False, need_labels: bool = False
) -> dict[str, str]:
    """``{id: reason}`` for the ids whose image (and mask / labels when asked) cannot be read."""
    bad = {}
    for image_id in ids:
        try:
            image = reader.load_image(image_id)
            if need_mask:
                check_same_size(reader, image_id, image, reader.load_mask(image_id))
            if need_labels:
                reader.labels(image_id)
        except VOCDataError as err:
            bad[image_id] = str(err).splitlines()[0]
    return bad


def check_same_size(reader: VOCReader, image_id: str, image: np.ndarray, mask: np.ndarray) -> None:
    if image.shape[:2] != mask.shape:
        raise VOCDataError(
            f"mask {reader.mask_path(image_id)} is {mask.shape[1]}x{mask.shape[0]} but image "
            f"{reader.image_path(image_id)} is {image.shape[1]}x{image.shape[0]}"
        )


def select_ids(
    reader: VOCReader,
    skip_bad: bool = False,
    need_mask: bool = False,
    need_labels: bool = False,
    skip_ids: Iterable[str] | None = None,
    exclude: Callable[[str], bool] | None = None,
) -> list[str]:
    """The reader's ids minus ``skip_ids``, minus those ``exclude(id)`` is true for (e.g. their
    output exists), minus unreadable ones when ``skip_bad`` (logged with a warning)."""
    skip = set(skip_ids or ())
    ids = [i for i in reader.ids if i not in skip and not (exclude is not None and exclude(i))]
    if skip_bad:
        bad = find_bad_ids(reader, ids, need_mask=need_mask, need_labels=need_labels)
        if bad:
            log.warning(
                "skipping %d unreadable item(s) of %s/%s: %s\n%s",
                len(bad), reader.root, reader.split, sorted(bad),
                "\n".join(f"  {i}: {reason}" for i, reason in sorted(bad.items())),
            )  # fmt: skip
            ids = [i for i in ids if i not in bad]
    return ids


def collate_single(items: list[dict]) -> dict:
    """Batch size 1 without stacking: the item itself (its lists and numpy arrays stay as they are)."""
    if len(items) != 1:
        raise ValueError(f"collate_single expects batch_size=1, got {len(items)} items")
    return items[0]


class ShardSampler(DistributedSampler):
    """Indices ``rank, rank + world_size, ...``: disjoint shards that together hold every index once.

    Unlike ``DistributedSampler`` it neither pads nor shuffles, so a DDP predict run writes every
    image exactly once. Being a ``DistributedSampler``, Lightning uses it as it is (it does not wrap
    it again) whatever ``Trainer(use_distributed_sampler=...)`` says.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.total_size = len(dataset)
        self.num_samples = len(range(rank, self.total_size, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------
class ClassificationDataset(Dataset):
    """Items ``{"image": float [3, crop, crop], "label": float [20], "id": str}``."""

    def __init__(
        self, reader: VOCReader, ids: Sequence[str], transform: Callable[[np.ndarray], torch.Tensor]
    ):
        self.reader, self.ids, self.transform = reader, list(ids), transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.ids[index]
        return {
            "image": self.transform(self.reader.load_image(image_id)),
            "label": torch.from_numpy(self.reader.labels(image_id)),
            "id": image_id,
        }


def shard_loader(dataset: Dataset, trainer: pl.Trainer | None, num_workers: int, collate_fn) -> DataLoader:
    """Batch-size-1 loader over this rank's :class:`ShardSampler` shard (the whole dataset
    without a trainer): under DDP every item is seen by exactly one process."""
    rank = trainer.global_rank if trainer is not None else 0
    world_size = trainer.world_size if trainer is not None else 1
    return DataLoader(
        dataset,
        batch_size=1,
        sampler=ShardSampler(dataset, num_replicas=world_size, rank=rank),
        num_workers=num_workers,
        collate_fn=collate_fn,
    )


class MultiScaleDataset(Dataset):
    """Items for CAM inference (see :class:`InferenceDataModule` for the keys)."""

    def __init__(
        self,
        reader: VOCReader,
        ids: Sequence[str],
        scales: Sequence[float] = (1.0, 0.5, 1.5, 2.0),
        with_mask: bool = False,
        with_image_uint8: bool = True,
    ):
        self.reader, self.ids = reader, list(ids)
        self.scales = tuple(float(s) for s in scales)
        self.with_mask, self.with_image_uint8 = with_mask, with_image_uint8

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.ids[index]
        image = self.reader.load_image(image_id)
        if self.reader.has_labels(image_id):
            label = self.reader.labels(image_id)
        else:  # e.g. VOC test images: no annotation, no mask
            label = np.zeros(NUM_CLASSES, dtype=np.float32)
        item = {
            "id": image_id,
            "images": multiscale_images(image, self.scales),
            "size": (int(image.shape[0]), int(image.shape[1])),
            "label": torch.from_numpy(label),
        }
        if self.with_image_uint8:
            item["image_uint8"] = image
        if self.with_mask:
            mask = self.reader.load_mask(image_id)
            check_same_size(self.reader, image_id, image, mask)
            item["mask"] = mask
        return item


def size_buckets(keys: Sequence[Hashable], batch_size: int) -> list[list[int]]:
    """Indices ``0 … len(keys)-1`` in batches of at most ``batch_size`` with equal keys.

    A bucket per distinct key (e.g. an image's per-scale sizes), cut into batches in index order;
    the batches are ordered by their first index, so the list order is roughly kept. Every index
    is in exactly one batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    buckets: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        buckets.setdefault(key, []).append(index)
    batches = [bucket[i : i + batch_size] for bucket in buckets.values() for i in range(0, len(bucket), batch_size)]
    return sorted(batches, key=lambda batch: batch[0])


def image_size(reader: VOCReader, image_id: str) -> tuple[int, int] | None:
    """``(H, W)`` from the image file's header (no decoding); ``None`` if it cannot be read (the
    item then fails, naming the file, when it is loaded)."""
    try:
        with Image.open(reader.image_path(image_id)) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 — any unreadable file: reported by load_image later
        return None
    return height, width


class BatchedDataset(Dataset):
    """Item ``b``: the list of ``dataset`` items of ``batches[b]`` (one predict step of several
    images). A dataset of batches, not a batch sampler: Lightning rebuilds a predict loader's batch
    sampler around its own sampler, which would drop :class:`ShardSampler`'s shard."""

    def __init__(self, dataset: Dataset, batches: Sequence[Sequence[int]]):
        self.dataset, self.batches = dataset, [list(b) for b in batches]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> list[dict[str, Any]]:
        return [self.dataset[i] for i in self.batches[index]]

    @property
    def batch_lengths(self) -> list[int]:
        return [len(b) for b in self.batches]


class SegmentationDataset(Dataset):
    """(image, mask) pairs: ``{"id": str, "image": uint8 [H, W, 3], "mask": uint8 [H, W]}``.

    For evaluation loops; with ``DataLoader(..., batch_size=1, collate_fn=collate_single)`` the
    arrays come through unchanged.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        skip_bad: bool = False,
        skip_ids: Iterable[str] | None = None,
        exclude: Callable[[str], bool] | None = None,
    ):
        self.reader = VOCReader(root, split)
        self.ids = select_ids(self.reader, skip_bad, need_mask=True, skip_ids=skip_ids, exclude=exclude)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.ids[index]
        image, mask = self.reader.load_image(image_id), self.reader.load_mask(image_id)
        check_same_size(self.reader, image_id, image, mask)
        return {"id": image_id, "image": image, "mask": mask}


# ---------------------------------------------------------------------------------------------
# DataModules
# ---------------------------------------------------------------------------------------------
class ClassificationDataModule(pl.LightningDataModule):
    """Image-level labels for the CAM classifier.

    Train batches (``train_list``, augmented as IRN's ``train_cam``) and val batches (``val_list``,
    long side resized to ``crop_size`` and zero-padded): ``{"image": float [B, 3, crop, crop],
    "label": float [B, 20], "id": list[str]}``. ``val_list=None`` gives no val loader.
    The last incomplete train batch is dropped (IRN), unless the list is shorter than a batch.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        train_list: str = "train_aug",
        val_list: str | None = "val",
        batch_size: int = 16,
        num_workers: int = 0,
        crop_size: int = 512,
        resize_long: Sequence[int] = (320, 640),
        skip_bad: bool = False,
        hflip: bool = True,
        drop_last: bool = True,
        pin_memory: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.root = root
        self.train_list, self.val_list = train_list, val_list
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.train_transform = ClassificationTrainTransform(crop_size, tuple(resize_long), hflip)
        self.eval_transform = ClassificationEvalTransform(crop_size)
        self.skip_bad, self.drop_last, self.pin_memory = skip_bad, drop_last, pin_memory
        self.train_set: ClassificationDataset | None = None
        self.val_set: ClassificationDataset | None = None

    def _dataset(self, split: str, transform: Callable) -> ClassificationDataset:
        reader = VOCReader(self.root, split)
        return ClassificationDataset(reader, select_ids(reader, self.skip_bad, need_labels=True), transform)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._dataset(self.train_list, self.train_transform)
        if stage in (None, "fit", "validate") and self.val_list and self.val_set is None:
            self.val_set = self._dataset(self.val_list, self.eval_transform)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup('fit') first"
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            drop_last=self.drop_last and len(self.train_set) >= self.batch_size,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(
            self.val_set,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )


class InferenceDataModule(pl.LightningDataModule):
    """Images at several scales for predict: one per step, or ``batch_size`` of one size.

    Item (not stacked): ``{"id": str, "images": list over scales of float
    [3, round(H·s), round(W·s)]`` (normalised, not flipped), ``"size": (H, W), "label": float [20]``
    (zeros where unknown), ``"image_uint8": uint8 [H, W, 3]`` (if ``with_image_uint8``),
    ``"mask": uint8 [H, W]`` (if ``with_mask``)}. With ``batch_size=1`` a batch is one item; with
    more, a batch is a list of up to ``batch_size`` items whose images have the same size at every
    scale (:func:`size_buckets` on the sizes in the image headers), so their climbs can share a
    batch without padding. VOC has few distinct sizes, so nearly all batches are full.

    ``skip_ids`` / ``exclude(id) -> bool`` leave ids out (e.g. those whose output file exists); they
    are applied in ``setup``, which Lightning runs on every rank between two barriers, so all ranks
    see the same list before anyone writes. ``predict_dataloader`` gives rank r the ids
    r, r + world_size, ... (:class:`ShardSampler`): no id twice, none missing.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        scales: Sequence[float] = (1.0, 0.5, 1.5, 2.0),
        num_workers: int = 0,
        skip_bad: bool = False,
        with_mask: bool = False,
        with_image_uint8: bool = True,
        skip_ids: Iterable[str] | None = None,
        exclude: Callable[[str], bool] | None = None,
        batch_size: int = 1,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["skip_ids", "exclude"])
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.root, self.split = root, split
        self.scales = tuple(float(s) for s in scales)
        self.num_workers, self.batch_size = int(num_workers), int(batch_size)
        self.skip_bad, self.with_mask, self.with_image_uint8 = skip_bad, with_mask, with_image_uint8
        self.skip_ids, self.exclude = set(skip_ids or ()), exclude
        self.dataset: MultiScaleDataset | None = None
        self.batched: BatchedDataset | None = None
        # With fewer ids than ranks (e.g. a resumed run near its end) some shards are empty; predict
        # needs no collective per batch, so an empty rank may simply do nothing.
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def setup(self, stage: str | None = None) -> None:
        reader = VOCReader(self.root, self.split)
        ids = select_ids(
            reader, self.skip_bad, need_mask=self.with_mask, skip_ids=self.skip_ids, exclude=self.exclude
        )
        self.dataset = MultiScaleDataset(reader, ids, self.scales, self.with_mask, self.with_image_uint8)
        if self.batch_size > 1:
            self.batched = BatchedDataset(self.dataset, size_buckets(self._size_keys(reader, ids), self.batch_size))

    def _size_keys(self, reader: VOCReader, ids: Sequence[str]) -> list[Hashable]:
        """Per image, its size at every scale (an unreadable header gets a key of its own)."""
        keys: list[Hashable] = []
        for image_id in ids:
            size = image_size(reader, image_id)
            keys.append(("unread", image_id) if size is None else tuple(scaled_size(*size, s) for s in self.scales))
        return keys

    def predict_dataloader(self) -> DataLoader:
        assert self.dataset is not None, "call setup('predict') first"
        dataset = self.batched if self.batch_size > 1 else self.dataset
        return shard_loader(dataset, self.trainer, self.num_workers, collate_single)
