"""Data for CCT's semi-supervised training (official ``dataloaders/voc.py``, ``base/base_dataset.py``).

- Labelled: the ``labelled_list`` ids (VOC ``train``, 1,464) with their ground-truth masks.
- Weak: ``weak_pool_list − labelled_list`` (``train_aug − train``, 9,118) with the pseudo masks
  ``<weak_label_dir>/<id>.png`` — the weak chain's ``sem_seg`` masks, or its IR labels — or, with
  ``weak_labels=none``, images only (their labels all 255). The split is checked disjoint, and
  disjoint from the val list.
- Augmentation (:class:`CCTTrainTransform`), the same for both: long side ``randint(0.5·400,
  2.0·400)`` (relative to ``base_size``, not to the image), image bicubic / mask nearest; pad
  bottom/right to the crop (mean colour, label 255) and take a random 320² crop; flip with p = ½.
- Batches 10 + 10; **one epoch = one pass over the weak list**; the labelled loader cycles, with
  fresh shuffling and augmentation on every pass. ⚠ The official ``itertools.cycle`` replays the
  first pass's augmented batches for the rest of the epoch; ``cache_labelled_pass=true`` mimics
  that (it keeps a pass of batches in memory: ~1.8 GB for VOC at 320²).
- Validation: full images, one per batch, GT masks.

Train batches: ``{"labelled": {"id": list, "image": float [B, 3, crop, crop], "label": int64
[B, crop, crop]}, "weak": {same, B'}}``; val: see :func:`~advcam_pl.data.segmentation.collate_image`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader

from advcam_pl.data.datamodules import select_ids
from advcam_pl.data.segmentation import (
    PseudoMaskDataset,
    SegmentationImageDataset,
    collate_image,
    ids_with_label_files,
)
from advcam_pl.data.transforms import normalize, randint, random_crop, scale_image, scale_mask
from advcam_pl.data.voc import IGNORE_INDEX, VOCReader

log = logging.getLogger(__name__)

WEAK_LABEL_MODES = ("sem_seg", "ir_label", "none")


class CCTTrainTransform:
    """CCT's training view: uint8 image ``[H, W, 3]`` + uint8 mask ``[H, W]`` → float
    ``[3, crop, crop]`` + int64 ``[crop, crop]``. Order: resize → pad + crop → flip (see module doc)."""

    def __init__(
        self,
        crop_size: int = 320,
        base_size: int = 400,
        scale_range: Sequence[float] = (0.5, 2.0),
        flip: bool = True,
        ignore_index: int = IGNORE_INDEX,
    ):
        self.crop_size, self.base_size = int(crop_size), int(base_size)
        self.long_range = (int(base_size * scale_range[0]), int(base_size * scale_range[1]))
        self.flip, self.ignore_index = flip, ignore_index

    def resize(self, img: np.ndarray, mask: np.ndarray, rng: np.random.Generator | None = None):
        """Long side to a uniform integer in ``long_range`` (both ends included), aspect kept."""
        scale = randint(rng, *self.long_range) / max(img.shape[:2])
        return scale_image(img, scale), scale_mask(mask, scale)

    def pad_crop(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator | None = None):
        """Pad ``image`` (normalised, ``[H, W, 3]``: 0 = the mean colour) and ``mask`` at the
        bottom/right up to the crop, then take the same random ``crop × crop`` window of both."""
        pad_h, pad_w = max(self.crop_size - image.shape[0], 0), max(self.crop_size - image.shape[1], 0)
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
            mask = np.pad(mask, ((0, pad_h), (0, pad_w)), constant_values=self.ignore_index)
        return random_crop([image, mask], self.crop_size, [0.0, self.ignore_index], rng=rng)

    def __call__(
        self, img: np.ndarray, mask: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask = self.resize(img, mask, rng)
        normalized = normalize(img).permute(1, 2, 0).numpy()
        image, mask = self.pad_crop(normalized, mask, rng)
        if self.flip and randint(rng, 0, 1):
            image, mask = image[:, ::-1], mask[:, ::-1]
        image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return image_t, torch.from_numpy(mask.astype(np.int64))

    def __repr__(self) -> str:
        return (f"CCTTrainTransform(crop_size={self.crop_size}, long_side={self.long_range}, "
                f"flip={self.flip})")  # fmt: skip


class UnlabelledDataset(PseudoMaskDataset):
    """Images without labels (``weak_labels=none``): the label is all 255, so nothing leaks in."""

    def __init__(self, reader: VOCReader, ids: Sequence[str], transform):
        super().__init__(reader, ids, None, transform)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.ids[index]
        image = self.reader.load_image(image_id)
        image_t, label_t = self.transform(image, np.full(image.shape[:2], IGNORE_INDEX, np.uint8))
        return {"id": image_id, "image": image_t, "label": label_t}


def split_semi_ids(labelled_ids: Sequence[str], pool_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(labelled, weak)``: the labelled ids, and the pool's ids that are not labelled (pool order).

    Raises on duplicated ids; warns when labelled ids are missing from the pool (VOC: ``train`` ⊂
    ``train_aug``, so ``train ∪ weak = train_aug``).
    """
    for name, ids in (("labelled", labelled_ids), ("weak pool", pool_ids)):
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if list(ids).count(i) > 1})[:5]
            raise ValueError(f"the {name} list repeats ids, e.g. {dup}")
    labelled = set(labelled_ids)
    outside = sorted(labelled - set(pool_ids))
    if outside:
        log.warning("%d labelled ids are not in the weak pool list (e.g. %s)", len(outside), outside[:5])
    return list(labelled_ids), [i for i in pool_ids if i not in labelled]


def check_disjoint(splits: Mapping[str, Iterable[str]]) -> None:
    """Raise ``ValueError`` naming the first two splits that share ids (and a few of them)."""
    names = list(splits)
    sets = {name: set(ids) for name, ids in splits.items()}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = sorted(sets[a] & sets[b])
            if common:
                raise ValueError(
                    f"the {a} and {b} splits share {len(common)} ids (e.g. {common[:5]}); they must be disjoint"
                )


class LabelledCycle:
    """Endless batches of ``loader``: re-iterated on every pass (fresh shuffle and augmentation), or,
    with ``cache_first_pass``, the first pass's batches replayed (the official ``itertools.cycle``).

    Has no length, so ``CombinedLoader(mode="min_size")`` ends the epoch with the weak loader.
    """

    def __init__(self, loader: DataLoader, cache_first_pass: bool = False):
        self.loader, self.cache_first_pass = loader, cache_first_pass

    def __iter__(self) -> Iterator[Any]:
        if self.cache_first_pass:
            cached = []
            for batch in self.loader:
                cached.append(batch)
                yield batch
            if not cached:
                return
            while True:
                yield from cached
        while True:
            empty = True
            for batch in self.loader:
                empty = False
                yield batch
            if empty:
                return


class SemiDataModule(pl.LightningDataModule):
    """Labelled + weak batches for CCT (see the module doc).

    Args:
        root: the VOC2012 folder.
        labelled_list, weak_pool_list, val_list: split names (``train``, ``train_aug``, ``val``).
        weak_labels: ``sem_seg`` | ``ir_label`` (read ``weak_label_dir/<id>.png``) | ``none``.
        weak_label_dir: the weak chain's mask folder (``artifacts.sem_seg_dir`` / ``ir_label_dir``).
        batch_size, weak_batch_size: 10 + 10.
        crop_size, base_size, scale_range, flip: :class:`CCTTrainTransform`.
        skip_bad: drop (and list) unreadable images, labelled ids without a GT mask and weak ids
            without a mask file, instead of raising.
        cache_labelled_pass: replay the labelled loader's first pass, as the official code does.
        drop_last: drop incomplete last batches (official: no). A last batch of one image is always
            dropped (training-mode BN of the PSP's 1×1 bin cannot normalise one value).
        skip_ids: weak ids left out (images the weak chain skipped as unreadable: they have no mask).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        labelled_list: str = "train",
        weak_pool_list: str = "train_aug",
        val_list: str | None = "val",
        weak_labels: str = "sem_seg",
        weak_label_dir: str | os.PathLike | None = None,
        batch_size: int = 10,
        weak_batch_size: int = 10,
        num_workers: int = 0,
        crop_size: int = 320,
        base_size: int = 400,
        scale_range: Sequence[float] = (0.5, 2.0),
        flip: bool = True,
        skip_bad: bool = False,
        cache_labelled_pass: bool = False,
        drop_last: bool = False,
        skip_ids: Iterable[str] = (),
    ):
        super().__init__()
        self.skip_ids = set(skip_ids)
        if weak_labels not in WEAK_LABEL_MODES:
            raise ValueError(f"weak_labels must be one of {WEAK_LABEL_MODES}, got {weak_labels!r}")
        if weak_labels != "none" and not weak_label_dir:
            raise ValueError(f"weak_labels={weak_labels} needs weak_label_dir (the weak chain's mask folder)")
        self.root = Path(root)
        self.labelled_list, self.weak_pool_list, self.val_list = labelled_list, weak_pool_list, val_list
        self.weak_labels = weak_labels
        self.weak_label_dir = None if weak_labels == "none" else Path(weak_label_dir)
        self.batch_size, self.weak_batch_size = int(batch_size), int(weak_batch_size)
        self.num_workers, self.skip_bad = int(num_workers), skip_bad
        self.cache_labelled_pass, self.drop_last = cache_labelled_pass, drop_last
        self.transform = CCTTrainTransform(crop_size, base_size, scale_range, flip)
        self.labelled_set: PseudoMaskDataset | None = None
        self.weak_set: PseudoMaskDataset | None = None
        self.val_set: SegmentationImageDataset | None = None

    # -- setup ------------------------------------------------------------------------------------
    def _weak_ids(self, ids: list[str]) -> list[str]:
        """``ids`` whose mask file exists; a missing one raises, naming it (unless ``skip_bad``)."""
        if self.weak_label_dir is None:
            return ids
        producer = "make_sem_seg" if self.weak_labels == "sem_seg" else "make_ir_label"
        return ids_with_label_files(ids, self.weak_label_dir, "weak", f"run the weak chain up to {producer}",
                                    "train without weak labels (semi.weak_labels=none)", self.skip_bad)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            labelled_reader = VOCReader(self.root, self.labelled_list)
            pool_reader = VOCReader(self.root, self.weak_pool_list)
            labelled_ids, weak_ids = split_semi_ids(labelled_reader.ids, pool_reader.ids)
            weak_ids = [i for i in weak_ids if i not in self.skip_ids]  # skipped by the weak chain
            splits = {"labelled": labelled_ids, "weak": weak_ids}
            if self.val_list:
                splits["val"] = VOCReader(self.root, self.val_list).ids
            check_disjoint(splits)
            labelled_ids = [i for i in select_ids(labelled_reader, self.skip_bad, need_mask=True)
                            if i in set(labelled_ids)]  # fmt: skip
            pool_ok = set(select_ids(pool_reader, self.skip_bad))
            weak_ids = self._weak_ids([i for i in weak_ids if i in pool_ok])
            if not labelled_ids or not weak_ids:
                raise ValueError(
                    f"no {'labelled' if not labelled_ids else 'weak'} images: {len(labelled_ids)} labelled "
                    f"({self.labelled_list}), {len(weak_ids)} weak ({self.weak_pool_list} − {self.labelled_list})"
                )
            self.labelled_set = PseudoMaskDataset(labelled_reader, labelled_ids, None, self.transform)
            if self.weak_label_dir is None:
                self.weak_set = UnlabelledDataset(pool_reader, weak_ids, self.transform)
            else:
                self.weak_set = PseudoMaskDataset(pool_reader, weak_ids, self.weak_label_dir, self.transform)
            log.info("CCT data: %d labelled (%s, GT masks), %d weak (%s − %s, labels: %s), %r",
                     len(labelled_ids), self.labelled_list, len(weak_ids), self.weak_pool_list,
                     self.labelled_list, self.weak_label_dir or "none", self.transform)  # fmt: skip
        if stage in (None, "fit", "validate") and self.val_list:
            reader = VOCReader(self.root, self.val_list)
            self.val_set = SegmentationImageDataset(reader, select_ids(reader, self.skip_bad, need_mask=True))

    # -- loaders ----------------------------------------------------------------------------------
    def _loader(self, dataset, batch_size: int) -> DataLoader:
        drop_last = self.drop_last or len(dataset) % batch_size == 1
        if drop_last and len(dataset) < batch_size:
            raise ValueError(f"{len(dataset)} images make no full batch of {batch_size}")
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> CombinedLoader:
        assert self.labelled_set is not None and self.weak_set is not None, "call setup('fit') first"
        labelled = LabelledCycle(self._loader(self.labelled_set, self.batch_size), self.cache_labelled_pass)
        weak = self._loader(self.weak_set, self.weak_batch_size)
        return CombinedLoader({"labelled": labelled, "weak": weak}, mode="min_size")

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=1, num_workers=self.num_workers, collate_fn=collate_image)
