"""IRN's training data: random crops of an image and its IR label, and the pair labels they give.

IRN ``voc12/dataloader.py`` (``VOC12AffinityDataset``): rescale image (bicubic) and IR label
(nearest) by a random factor in [0.5, 1.5], normalise, random flip, random ``crop_size`` crop
(image padded with 0, label with 255), label reduced to stride 4 by ``imutils.pil_rescale(label, 0.25, 0)``
(PIL nearest, which samples pixel ``4i + 2``: :func:`stride4_labels`). The pair labels (``GetAffinityLabelFromIndices``)
are computed from the stride-4 label on the training device by :func:`affinity_labels` instead of
in the loader: the same numbers, without shipping ``3 × D × N`` floats (24 MB at crop 512) per image.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from advcam_pl.data.transforms import normalize, random_crop, scale_image, scale_mask
from advcam_pl.data.voc import VOCReader

log = logging.getLogger(__name__)

IGNORE_INDEX = 255
NUM_CLASSES_BG = 21


def affinity_labels(
    label: torch.Tensor, src_indices: torch.Tensor, dst_indices: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair labels from a stride-4 label map (IRN ``GetAffinityLabelFromIndices``).

    Args:
        label: ``[B, h, w]`` integer labels (0 background, 1–20 classes, 255 ignore).
        src_indices: ``[N]`` flat source indices; ``dst_indices``: ``[D, N]`` flat destinations
            (:class:`advcam_pl.refine.indexing.PathIndex`).
    Returns:
        ``bg_pos``, ``fg_pos``, ``neg``: float ``[B, D, N]``; a pair counts only when both labels
        are < 21; positive when equal (background or a class), negative when different.
    """
    flat = label.reshape(label.shape[0], -1).long()
    src = flat[:, src_indices].unsqueeze(1)  # [B, 1, N]
    dst = flat[:, dst_indices.reshape(-1)].view(flat.shape[0], *dst_indices.shape)  # [B, D, N]
    valid = (src < NUM_CLASSES_BG) & (dst < NUM_CLASSES_BG)
    equal = src == dst
    pos = equal & valid
    bg_pos = pos & (src == 0)
    fg_pos = pos & (src > 0)
    neg = ~equal & valid
    return bg_pos.float(), fg_pos.float(), neg.float()


def stride4_labels(label: np.ndarray) -> np.ndarray:
    """``[S, S']`` labels (sides multiples of 4) → ``[S/4, S'/4]``, as IRN's ``pil_rescale(label, 0.25, 0)``.

    PIL's nearest neighbour takes source pixel ``⌊(i + 0.5) · 4⌋ = 4i + 2`` (the centre of each 4×4
    cell), not ``4i``.
    """
    if label.shape[0] % 4 or label.shape[1] % 4:
        raise ValueError(f"stride-4 labels need sides that are multiples of 4, got {label.shape}")
    return label[2::4, 2::4]


def read_label_png(path: str | Path) -> np.ndarray:
    """An IR-label / pseudo-mask PNG as indices ``[H, W]`` uint8; a broken file is a
    :class:`~advcam_pl.errors.CorruptFileError` naming it."""
    from advcam_pl.errors import CorruptFileError

    try:
        with Image.open(path) as image:
            return np.array(image)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for truncated or foreign files
        raise CorruptFileError(f"label PNG {path} cannot be read ({err}); run the stage that wrote it again "
                               "(make_ir_label / make_sem_seg redo broken files)") from err


class AffinityDataset(Dataset):
    """Items ``{"image": float [3, S, S], "label": int64 [S/4, S/4], "id": str}``.

    Args:
        root, split: the VOC folder and the list of training images.
        ir_label_dir: ``<id>.png`` IR labels (0 bg, 1–20, 255 ignore) at image resolution.
        crop_size: S, a multiple of 4. rescale: (min, max) random scale. hflip: random mirror.
        skip_ids: ids left out (images an earlier stage skipped as unreadable).
    """

    def __init__(self, root: str | Path, split: str, ir_label_dir: str | Path, crop_size: int = 512,
                 rescale: Sequence[float] | None = (0.5, 1.5), hflip: bool = True, skip_ids: Iterable[str] = ()):
        if crop_size % 4:
            raise ValueError(f"crop_size must be a multiple of 4 (stride-4 labels), got {crop_size}")
        self.reader = VOCReader(root, split)
        skip = set(skip_ids)
        self.ids = [i for i in self.reader.ids if i not in skip]
        self.ir_label_dir = Path(ir_label_dir)
        self.crop_size = int(crop_size)
        self.rescale = tuple(rescale) if rescale else None
        self.hflip = hflip
        missing = [i for i in self.ids if not (self.ir_label_dir / f"{i}.png").is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(self.ids)} images of split {split!r} have no IR label in "
                f"{self.ir_label_dir} (e.g. {missing[0]}). Run the make_ir_label stage; it labels "
                "data.infer_list, so data.train_list must be part of it."
            )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.ids[index]
        img = self.reader.load_image(image_id)
        label = read_label_png(self.ir_label_dir / f"{image_id}.png")
        if label.shape != img.shape[:2]:
            raise ValueError(f"IR label of {image_id} is {label.shape}, the image {img.shape[:2]}")
        if self.rescale:
            scale = float(np.random.uniform(*self.rescale))
            img, label = scale_image(img, scale), scale_mask(label, scale)
        image = normalize(img).permute(1, 2, 0).numpy()  # [H, W, 3] float
        if self.hflip and np.random.randint(2):
            image, label = image[:, ::-1], label[:, ::-1]
        image, label = random_crop([image, label], self.crop_size, [0.0, IGNORE_INDEX])
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "label": torch.from_numpy(np.ascontiguousarray(stride4_labels(label))).long(),
            "id": image_id,
        }


class TopLeftCropDataset(Dataset):
    """Normalised images in a ``crop_size``² zero canvas at the top left (IRN's mean-shift pass)."""

    def __init__(self, root: str | Path, split: str, crop_size: int = 512, skip_ids: Iterable[str] = ()):
        self.reader = VOCReader(root, split)
        skip = set(skip_ids)
        self.ids = [i for i in self.reader.ids if i not in skip]
        self.crop_size = int(crop_size)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = normalize(self.reader.load_image(self.ids[index]))[:, : self.crop_size, : self.crop_size]
        canvas = torch.zeros(3, self.crop_size, self.crop_size)
        canvas[:, : image.shape[1], : image.shape[2]] = image
        return canvas


class AffinityDataModule(pl.LightningDataModule):
    """IRN training batches ``{"image": [B, 3, S, S], "label": [B, S/4, S/4], "id": list}``.

    ``mean_shift_dataloader`` serves the top-left crops of ``infer_split`` for the displacement
    mean computed after training (``max_images`` caps it; None = all, as IRN). ``skip_ids``: images
    left out of both (skipped as unreadable by an earlier stage).
    """

    def __init__(self, root: str | Path, split: str, ir_label_dir: str | Path, crop_size: int = 512,
                 rescale: Sequence[float] | None = (0.5, 1.5), hflip: bool = True, batch_size: int = 32,
                 num_workers: int = 0, infer_split: str | None = None, mean_shift_images: int | None = None,
                 skip_ids: Iterable[str] = ()):
        super().__init__()
        self.skip_ids = set(skip_ids)
        self.root, self.split, self.ir_label_dir = root, split, ir_label_dir
        self.crop_size, self.rescale, self.hflip = crop_size, rescale, hflip
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.infer_split = infer_split or split
        self.mean_shift_images = mean_shift_images
        self.train_set: AffinityDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = AffinityDataset(self.root, self.split, self.ir_label_dir, self.crop_size,
                                             self.rescale, self.hflip, self.skip_ids)

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        # IRN drops the last partial batch; a set smaller than one batch still gives one.
        drop_last = len(self.train_set) >= self.batch_size
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=drop_last,
                          num_workers=self.num_workers, pin_memory=torch.cuda.is_available(),
                          persistent_workers=self.num_workers > 0)

    def mean_shift_dataloader(self, rank: int = 0, world_size: int = 1) -> DataLoader:
        dataset: Dataset = TopLeftCropDataset(self.root, self.infer_split, self.crop_size, self.skip_ids)
        n = len(dataset) if self.mean_shift_images is None else min(len(dataset), int(self.mean_shift_images))
        dataset = Subset(dataset, range(rank, n, world_size))
        # IRN averages per-batch means over full batches (drop_last).
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          drop_last=len(dataset) >= self.batch_size)
