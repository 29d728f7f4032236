"""Data for the segmentation network: (image, pseudo mask) pairs to train on, GT masks to validate on.

- :class:`SegmentationTrainTransform`: DeepLab-v2's augmentation — random scale in ``scale_range``
  (image bicubic, mask nearest), random flip, ImageNet normalisation, random ``crop_size``² crop,
  padded with the mean colour (0 after normalisation) and the ignore label 255.
- :class:`PseudoMaskDataset`: training items from ``cfg.data.train_list``; the labels are the PNGs
  in ``label_dir`` (``<id>.png``, e.g. ``cfg.artifacts.sem_seg_dir``), or the dataset's own masks
  when ``label_dir`` is ``None`` / ``"gt"``.
- :class:`SegmentationImageDataset`: whole images (and GT masks where asked) for validation and
  prediction, one per step.
- :class:`SegmentationDataModule`: all three as a LightningDataModule.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from advcam_pl.data.datamodules import check_same_size, select_ids, shard_loader
from advcam_pl.data.transforms import normalize, random_crop, scale_image, scale_mask
from advcam_pl.data.voc import IGNORE_INDEX, VOCDataError, VOCReader, read_mask_file

log = logging.getLogger(__name__)

NUM_SEG_CLASSES = 21


def is_gt(label_dir: str | os.PathLike | None) -> bool:
    """``None`` or ``"gt"``: train on the dataset's own masks."""
    return label_dir is None or str(label_dir).lower() in ("gt", "none", "null", "")


class SegmentationTrainTransform:
    """uint8 image ``[H, W, 3]`` + uint8 mask ``[H, W]`` →
    float ``[3, crop, crop]`` + int64 ``[crop, crop]``."""

    def __init__(
        self,
        crop_size: int = 321,
        scale_range: Sequence[float] = (0.5, 1.5),
        flip: bool = True,
        ignore_index: int = IGNORE_INDEX,
    ):
        self.crop_size = int(crop_size)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.flip = flip
        self.ignore_index = ignore_index

    def __call__(
        self, img: np.ndarray, mask: np.ndarray, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        uniform = np.random.uniform if rng is None else rng.uniform
        scale = float(uniform(*self.scale_range))
        img, mask = scale_image(img, scale), scale_mask(mask, scale)
        if self.flip and uniform() < 0.5:
            img, mask = img[:, ::-1], mask[:, ::-1]
        normalized = normalize(np.ascontiguousarray(img)).permute(1, 2, 0).numpy()
        crop_img, crop_mask = random_crop(
            [normalized, np.ascontiguousarray(mask)], self.crop_size, [0.0, self.ignore_index], rng=rng
        )
        image = torch.from_numpy(np.ascontiguousarray(crop_img.transpose(2, 0, 1)))
        return image, torch.from_numpy(crop_mask.astype(np.int64))

    def __repr__(self) -> str:
        return (
            f"SegmentationTrainTransform(crop_size={self.crop_size}, scale_range={self.scale_range}, "
            f"flip={self.flip})"
        )


def ids_with_label_files(ids: Sequence[str], label_dir: str | os.PathLike, what: str, producer: str,
                         alternative: str, skip_bad: bool = False) -> list[str]:
    """The ``ids`` whose label PNG ``label_dir/<id>.png`` exists (a weak chain's output folder).

    A missing folder is an error saying ``producer`` (what writes it, e.g. "run stage make_sem_seg")
    or ``alternative``; missing files are an error naming the first id and the folder, unless
    ``skip_bad``: then those ids are dropped with a warning. ``what`` names the ids in messages.
    """
    label_dir = Path(label_dir)
    if not label_dir.is_dir():
        raise FileNotFoundError(f"label folder {label_dir} does not exist: {producer} first, or {alternative}")
    missing = [i for i in ids if not (label_dir / f"{i}.png").is_file()]
    if missing and not skip_bad:
        raise FileNotFoundError(
            f"{len(missing)} of {len(ids)} {what} ids have no label PNG in {label_dir}: {missing[0]}.png is "
            f"missing (first of {missing[:5]}); {producer} or pass data.skip_bad=true"
        )
    if missing:
        log.warning("skipping %d %s ids without a label PNG in %s: %s", len(missing), what, label_dir, missing[:20])
    dropped = set(missing)
    return [i for i in ids if i not in dropped]


class PseudoMaskDataset(Dataset):
    """Training items ``{"id": str, "image": float [3, crop, crop], "label": int64 [crop, crop]}``."""

    def __init__(
        self,
        reader: VOCReader,
        ids: Sequence[str],
        label_dir: str | os.PathLike | None,
        transform: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]],
    ):
        self.reader, self.ids, self.transform = reader, list(ids), transform
        self.label_dir = None if is_gt(label_dir) else Path(label_dir)

    def __len__(self) -> int:
        return len(self.ids)

    def label_path(self, image_id: str) -> Path:
        return (
            self.reader.mask_path(image_id) if self.label_dir is None else self.label_dir / f"{image_id}.png"
        )

    def load_label(self, image_id: str) -> np.ndarray:
        """``[H, W]`` uint8 label map (0–20, 255 ignore)."""
        return (
            self.reader.load_mask(image_id)
            if self.label_dir is None
            else read_mask_file(self.label_path(image_id))
        )

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.ids[index]
        image, label = self.reader.load_image(image_id), self.load_label(image_id)
        if image.shape[:2] != label.shape:
            raise VOCDataError(
                f"label {self.label_path(image_id)} is {label.shape[::-1]} (w, h) but image "
                f"{self.reader.image_path(image_id)} is {image.shape[1::-1]}"
            )
        image_t, label_t = self.transform(image, label)
        return {"id": image_id, "image": image_t, "label": label_t}


class SegmentationImageDataset(Dataset):
    """Whole images: ``{"id": str, "image": float [3, H, W], "image_uint8": uint8 [H, W, 3]}`` plus
    ``"label": int64 [H, W]`` (the GT mask) when ``with_mask``."""

    def __init__(self, reader: VOCReader, ids: Sequence[str], with_mask: bool = True):
        self.reader, self.ids, self.with_mask = reader, list(ids), with_mask

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.ids[index]
        image = self.reader.load_image(image_id)
        item = {"id": image_id, "image": normalize(image), "image_uint8": image}
        if self.with_mask:
            mask = self.reader.load_mask(image_id)
            check_same_size(self.reader, image_id, image, mask)
            item["label"] = torch.from_numpy(mask.astype(np.int64))
        return item


def collate_image(items: list[dict]) -> dict:
    """Batch size 1: tensors get a batch dim (``[1, ...]``), ``id`` becomes ``[id]``, the uint8 image
    stays a numpy array (Lightning moves only tensors to the device)."""
    if len(items) != 1:
        raise ValueError(f"whole-image batches hold one image, got {len(items)}")
    item = items[0]
    out = {"id": [item["id"]], "image": item["image"][None], "image_uint8": item["image_uint8"]}
    if "label" in item:
        out["label"] = item["label"][None]
    return out


class SegmentationDataModule(pl.LightningDataModule):
    """Train on (image, pseudo mask) pairs of ``train_list``; validate on GT masks of ``val_list``;
    predict whole images of ``predict_list``.

    Batches: train ``{"image": float [B, 3, crop, crop], "label": int64 [B, crop, crop], "id": list}``;
    val / predict (one image) ``{"image": float [1, 3, H, W], "label": int64 [1, H, W] (val),
    "image_uint8": uint8 [H, W, 3], "id": [str]}``.

    ``label_dir``: folder of ``<id>.png`` label maps (palette indices, 255 ignored), or ``None`` /
    ``"gt"`` for the dataset's own masks. Every training id needs its label file; a missing one is
    an error naming the folder (or, with ``skip_bad``, the id is dropped with a warning).
    ``predict_exclude(id) -> bool`` leaves out ids whose outputs already exist. ``train_skip_ids``:
    training ids left out (images an earlier stage skipped as unreadable, so they have no label).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        train_list: str = "train_aug",
        val_list: str = "val",
        label_dir: str | os.PathLike | None = None,
        batch_size: int = 10,
        num_workers: int = 0,
        crop_size: int = 321,
        scale_range: Sequence[float] = (0.5, 1.5),
        flip: bool = True,
        skip_bad: bool = False,
        predict_list: str | None = None,
        predict_with_mask: bool = False,
        predict_exclude: Callable[[str], bool] | None = None,
        predict_skip_ids: Iterable[str] | None = None,
        train_skip_ids: Iterable[str] | None = None,
    ):
        super().__init__()
        self.train_skip_ids = set(train_skip_ids or ())
        self.root, self.train_list, self.val_list = Path(root), train_list, val_list
        self.label_dir = None if is_gt(label_dir) else Path(label_dir)
        self.batch_size, self.num_workers, self.skip_bad = int(batch_size), int(num_workers), skip_bad
        self.transform = SegmentationTrainTransform(crop_size, scale_range, flip)
        self.predict_list, self.predict_with_mask = predict_list, predict_with_mask
        self.predict_exclude, self.predict_skip_ids = predict_exclude, set(predict_skip_ids or ())
        self.train_set: PseudoMaskDataset | None = None
        self.val_set: SegmentationImageDataset | None = None
        self.predict_set: SegmentationImageDataset | None = None

    # -- setup ------------------------------------------------------------------------------------
    def _train_set(self) -> PseudoMaskDataset:
        reader = VOCReader(self.root, self.train_list)
        ids = select_ids(reader, self.skip_bad, need_mask=self.label_dir is None, skip_ids=self.train_skip_ids)
        if self.label_dir is not None:
            ids = ids_with_label_files(ids, self.label_dir, self.train_list, "run stage make_sem_seg",
                                       "train on the dataset's own masks with model.train.label_dir=gt",
                                       self.skip_bad)
        if not ids:
            raise ValueError(f"no training images in {self.root}/{self.train_list}")
        return PseudoMaskDataset(reader, ids, self.label_dir, self.transform)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.train_set = self._train_set()
            log.info(
                "segmentation training: %d images of %s, labels from %s, %r",
                len(self.train_set),
                self.train_list,
                self.label_dir or "the dataset's masks",
                self.transform,
            )
        if stage in (None, "fit", "validate"):
            reader = VOCReader(self.root, self.val_list)
            self.val_set = SegmentationImageDataset(reader, select_ids(reader, self.skip_bad, need_mask=True))
        if stage in (None, "predict"):
            if self.predict_list is None:
                raise ValueError("SegmentationDataModule(predict_list=...) is needed for predict")
            reader = VOCReader(self.root, self.predict_list)
            ids = select_ids(
                reader,
                self.skip_bad,
                need_mask=self.predict_with_mask,
                skip_ids=self.predict_skip_ids,
                exclude=self.predict_exclude,
            )
            self.predict_set = SegmentationImageDataset(reader, ids, with_mask=self.predict_with_mask)

    # -- loaders ----------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup('fit') first"
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup('fit') or setup('validate') first"
        return DataLoader(self.val_set, batch_size=1, num_workers=self.num_workers, collate_fn=collate_image)

    def predict_dataloader(self) -> DataLoader:
        assert self.predict_set is not None, "call setup('predict') first"
        return shard_loader(self.predict_set, self.trainer, self.num_workers, collate_image)

    # -- statistics -------------------------------------------------------------------------------
    def class_frequencies(self, num_classes: int = NUM_SEG_CLASSES) -> np.ndarray:
        """Pixel counts ``[num_classes]`` of the (un-augmented) training labels; 255 not counted."""
        dataset = self.train_set or self._train_set()
        counts = np.zeros(256, dtype=np.int64)
        for image_id in dataset.ids:
            counts += np.bincount(dataset.load_label(image_id).ravel(), minlength=256)
        return counts[:num_classes]
