"""PASCAL VOC 2012 (+ SBD ``SegmentationClassAug``) on disk: ids, images, masks, image-level labels.

Plain numpy, no torch: every stage and every test can read the data the same way.

Layout (``root`` is the ``VOC2012`` folder)::

    root/JPEGImages/<id>.jpg
    root/Annotations/<id>.xml               image labels (optional; else the mask's classes)
    root/SegmentationClass/<id>.png         palette PNGs, VOC train + val (1,464 + 1,449)
    root/SegmentationClassAug/<id>.png      SBD-augmented masks (train_aug, 10,582, + val)
    root/ImageSets/Segmentation/<split>.txt one id per line: train_aug, train, val, test
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
CLASS_NAMES_BG: tuple[str, ...] = ("background", *CLASS_NAMES)
NUM_CLASSES = len(CLASS_NAMES)  # 20, background excluded
IGNORE_INDEX = 255

IMAGE_DIR = "JPEGImages"
ANNOTATION_DIR = "Annotations"
MASK_DIR = "SegmentationClass"
MASK_AUG_DIR = "SegmentationClassAug"
LIST_DIR = os.path.join("ImageSets", "Segmentation")

EXPECTED_LAYOUT = """expected layout (root is the VOC2012 folder):
  root/JPEGImages/<id>.jpg
  root/Annotations/<id>.xml                 (image labels; optional, else taken from the masks)
  root/SegmentationClass/<id>.png           (VOC train + val masks)
  root/SegmentationClassAug/<id>.png        (SBD-augmented masks, needed for train_aug)
  root/ImageSets/Segmentation/<split>.txt   (train_aug.txt, train.txt, val.txt, test.txt)
Without data, `python -m advcam_pl.data.synthetic --out DIR` writes a small dataset in this layout."""


class VOCLayoutError(FileNotFoundError):
    """A folder or list file of the VOC layout is missing (the message names it)."""


class VOCDataError(ValueError):
    """One file is unreadable or holds invalid values (the message names the file)."""


def _layout_error(what: str, path: Path, hint: str = "") -> VOCLayoutError:
    return VOCLayoutError(f"{what} not found: {path}\n{hint}{EXPECTED_LAYOUT}")


def read_id_list(path: str | os.PathLike) -> list[str]:
    """Ids of a split list, one per line.

    DeepLab-style lines (``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png``) give ``<id>`` too.
    """
    path = Path(path)
    if not path.is_file():
        raise _layout_error("split list", path)
    ids = []
    for line in path.read_text().splitlines():
        if line.strip():
            ids.append(Path(line.split()[0]).stem)
    if not ids:
        raise VOCLayoutError(f"split list is empty: {path}\n{EXPECTED_LAYOUT}")
    return ids


def read_mask_file(path: str | os.PathLike) -> np.ndarray:
    """A VOC mask PNG as palette indices, [H, W] uint8 in {0..20, 255}.

    Read with PIL as indices (mode ``P`` or ``L``), never through RGB: an RGB mask would map colours,
    not classes, so it is rejected.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            mask = np.array(image)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for broken files
        raise VOCDataError(f"cannot read mask {path}: {err}") from err
    if mode not in ("P", "L"):
        raise VOCDataError(
            f"mask {path} has mode {mode!r}; expected palette indices (mode 'P' or 'L'). "
            "Colour-coded RGB masks must be converted to class indices first."
        )
    counts = np.bincount(mask.ravel(), minlength=256)
    bad_values = np.flatnonzero(counts[NUM_CLASSES + 1 : IGNORE_INDEX]) + NUM_CLASSES + 1
    if bad_values.size:
        raise VOCDataError(
            f"mask {path} holds values {bad_values.tolist()[:10]} outside 0-{NUM_CLASSES} and {IGNORE_INDEX}"
        )
    return mask


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """An image file as RGB, [H, W, 3] uint8."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except Exception as err:
        raise VOCDataError(f"cannot read image {path}: {err}") from err


def labels_from_mask(mask: np.ndarray) -> np.ndarray:
    """The classes present in a [H, W] mask as a multi-hot float32 [20] (background and 255 ignored)."""
    present = np.bincount(mask.ravel(), minlength=256)[1 : NUM_CLASSES + 1] > 0
    return present.astype(np.float32)


def labels_from_xml(path: str | os.PathLike) -> np.ndarray:
    """Image labels from a VOC annotation XML as a multi-hot float32 [20] (IRN's convention).

    Every ``<object><name>`` that is one of the 20 classes counts, difficult objects included;
    part names (``<part><name>head</name>``) are children of ``<part>``, not of ``<object>``.
    """
    path = Path(path)
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError) as err:
        raise VOCDataError(f"cannot read annotation {path}: {err}") from err
    labels = np.zeros(NUM_CLASSES, dtype=np.float32)
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name in CLASS_NAMES:
            labels[CLASS_NAMES.index(name)] = 1.0
    return labels


class VOCReader:
    """One split of a VOC-layout folder.

    ``split`` names ``root/ImageSets/Segmentation/<split>.txt``. Masks come from
    ``SegmentationClassAug`` for ``train_aug`` and from ``SegmentationClass`` otherwise, falling back to
    ``SegmentationClassAug`` for ids that ``SegmentationClass`` lacks; ``mask_dir`` overrides the choice.
    Labels come from ``Annotations/<id>.xml``, else from the classes in the mask.
    """

    def __init__(self, root: str | os.PathLike, split: str, mask_dir: str | None = None):
        self.root = Path(root)
        self.split = split
        self._check_layout(mask_dir)
        self.ids: list[str] = read_id_list(self.root / LIST_DIR / f"{split}.txt")
        if mask_dir is not None:
            self.mask_dirs = (mask_dir,)
        elif split == "train_aug":
            self.mask_dirs = (MASK_AUG_DIR,)
        else:
            self.mask_dirs = (MASK_DIR, MASK_AUG_DIR)

    def _check_layout(self, mask_dir: str | None) -> None:
        if not self.root.is_dir():
            raise _layout_error("VOC root folder", self.root)
        if not (self.root / IMAGE_DIR).is_dir():
            hint = ""
            if (self.root / "VOC2012" / IMAGE_DIR).is_dir():
                hint = f"(did you mean root={self.root / 'VOC2012'}?)\n"
            raise _layout_error("image folder", self.root / IMAGE_DIR, hint)
        required_mask_dir = mask_dir or (MASK_AUG_DIR if self.split == "train_aug" else None)
        if required_mask_dir is not None and not (self.root / required_mask_dir).is_dir():
            raise _layout_error("mask folder", self.root / required_mask_dir)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"VOCReader(root={str(self.root)!r}, split={self.split!r}, n={len(self.ids)})"

    # -- paths -----------------------------------------------------------------------------------
    def image_path(self, image_id: str) -> Path:
        return self.root / IMAGE_DIR / f"{image_id}.jpg"

    def annotation_path(self, image_id: str) -> Path:
        return self.root / ANNOTATION_DIR / f"{image_id}.xml"

    def mask_path(self, image_id: str) -> Path:
        """The first of the split's mask folders that holds ``<id>.png`` (else the first folder's path)."""
        for folder in self.mask_dirs:
            path = self.root / folder / f"{image_id}.png"
            if path.is_file():
                return path
        return self.root / self.mask_dirs[0] / f"{image_id}.png"

    # -- contents --------------------------------------------------------------------------------
    def has_mask(self, image_id: str) -> bool:
        return self.mask_path(image_id).is_file()

    def has_labels(self, image_id: str) -> bool:
        """Whether image labels are known (an XML or a mask exists; false for VOC test images)."""
        return self.annotation_path(image_id).is_file() or self.has_mask(image_id)

    def load_image(self, image_id: str) -> np.ndarray:
        """RGB image, [H, W, 3] uint8."""
        return read_image_file(self.image_path(image_id))

    def load_mask(self, image_id: str) -> np.ndarray:
        """Ground-truth mask, [H, W] uint8 palette indices: 0 background, 1-20 classes, 255 ignore."""
        return read_mask_file(self.mask_path(image_id))

    def labels(self, image_id: str) -> np.ndarray:
        """Image-level labels, multi-hot float32 [20] (index 0 = aeroplane; no background)."""
        xml_path = self.annotation_path(image_id)
        if xml_path.is_file():
            return labels_from_xml(xml_path)
        if self.has_mask(image_id):
            return labels_from_mask(self.load_mask(image_id))
        raise VOCDataError(
            f"no image labels for {image_id!r}: neither {xml_path} nor {self.mask_path(image_id)} exists"
        )
