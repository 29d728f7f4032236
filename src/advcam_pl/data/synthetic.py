"""A small synthetic dataset in the PASCAL VOC 2012 layout, for demos and tests without VOC.

Each image holds one to three objects on a textured background. An object is a *body* plus a
smaller *head*, like an animal or a vehicle in a photo: the body's colour and texture are shared by
a family of classes (by default pairs such as cat/dog or bus/car), so the body alone does not say
which class it is; the head carries the class's own colour and pattern. A classifier can name the
class from the head, which is what makes its CAM cover less than the whole object. The masks cover
body and head.

The tree is what :class:`advcam_pl.data.voc.VOCReader` reads::

    JPEGImages/<id>.jpg            all splits
    Annotations/<id>.xml           train_aug and val (VOC format: name, difficult, bndbox, head part)
    SegmentationClassAug/<id>.png  train_aug and val (palette indices)
    SegmentationClass/<id>.png     train and val, with a 255 band on every label boundary
    ImageSets/Segmentation/{train_aug,train,val,test}.txt   train ⊂ train_aug; val disjoint;
                                   test has images only
    synthetic.json                 the generation parameters and :func:`summary`

As in VOC, the ``SegmentationClassAug`` masks of the ids that are also in train/val are identical to
their ``SegmentationClass`` masks (boundary band included); the augmentation-only ids have no band.
The same arguments give byte-identical files: image ``i`` depends only on ``(seed, i)``.

CLI::

    python -m advcam_pl.data.synthetic --out DIR [--seed 0] [--num-train 200] [--num-val 60] [--num-test 20]
    python -m advcam_pl.data.synthetic --summary DIR
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from advcam_pl.data.voc import (
    ANNOTATION_DIR,
    CLASS_NAMES,
    IGNORE_INDEX,
    IMAGE_DIR,
    LIST_DIR,
    MASK_AUG_DIR,
    MASK_DIR,
    VOCReader,
)
from advcam_pl.io import palette_image

# Consecutive pairs share a body: (aeroplane, bird), (bus, car), (cat, dog), (cow, horse).
DEFAULT_CLASSES: tuple[str, ...] = ("aeroplane", "bird", "bus", "car", "cat", "dog", "cow", "horse")

# Body looks of the first families (RGB 0-1, texture, superellipse exponent: 2 = ellipse, 4 = boxy);
# further families get procedural looks.
_FAMILY_LOOKS = (
    ((0.62, 0.65, 0.72), "stripes", 2.0),
    ((0.78, 0.62, 0.24), "hatch", 4.0),
    ((0.55, 0.38, 0.25), "mottle", 2.0),
    ((0.36, 0.46, 0.30), "spots", 3.0),
)
_BODY_TEXTURES = ("stripes", "hatch", "mottle", "spots")
_HEAD_PATTERNS = ("checker", "dots", "stripes", "rings", "eyes")


@dataclass(frozen=True)
class ObjectStyle:
    """How one class looks: a body shared with its family, a head of its own."""

    class_index: int  # 1-20, the VOC palette index
    body_rgb: tuple[float, float, float]
    body_texture: str
    body_exponent: float
    head_rgb: tuple[float, float, float]
    head_dark_rgb: tuple[float, float, float]
    head_pattern: str
    head_angle: float  # radians, orients the stripe pattern


def class_styles(classes: Sequence[str], classes_per_body: int = 2) -> list[ObjectStyle]:
    """One :class:`ObjectStyle` per class; classes ``k`` and ``k'`` share a body when
    ``k // classes_per_body == k' // classes_per_body``."""
    styles = []
    for position, name in enumerate(classes):
        family = position // classes_per_body
        if family < len(_FAMILY_LOOKS):
            body_rgb, texture, exponent = _FAMILY_LOOKS[family]
        else:
            hue = (0.11 + 0.29 * family) % 1.0
            body_rgb = colorsys.hsv_to_rgb(hue, 0.4, 0.6)
            texture = _BODY_TEXTURES[family % len(_BODY_TEXTURES)]
            exponent = (2.0, 3.0, 4.0)[family % 3]
        head_hue = (0.05 + 0.382 * position) % 1.0  # golden-ratio steps keep neighbours apart
        styles.append(
            ObjectStyle(
                class_index=CLASS_NAMES.index(name) + 1,
                body_rgb=tuple(body_rgb),
                body_texture=texture,
                body_exponent=exponent,
                head_rgb=colorsys.hsv_to_rgb(head_hue, 0.8, 0.95),
                head_dark_rgb=colorsys.hsv_to_rgb((head_hue + 0.5) % 1.0, 0.6, 0.25),
                head_pattern=_HEAD_PATTERNS[position % len(_HEAD_PATTERNS)],
                head_angle=math.radians(37.0 * position),
            )
        )
    return styles


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Zero-mean smooth noise in about [-1, 1], [H, W] float32, ``cells`` blobs along the long side."""
    grid_h = max(2, round(cells * height / max(height, width)))
    grid_w = max(2, round(cells * width / max(height, width)))
    coarse = rng.uniform(-1.0, 1.0, size=(grid_h, grid_w)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((width, height), resample=Image.BICUBIC))


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A muted scene: sky/wall colour above a wavy horizon, ground below, smooth shading, grain,
    and a few plain clutter blobs. [H, W, 3] float32 in 0-1."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    upper = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.05, 0.35), rng.uniform(0.45, 0.85)))
    lower = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.1, 0.4), rng.uniform(0.3, 0.7)))
    horizon = height * rng.uniform(0.35, 0.75) + height * 0.06 * np.sin(
        2 * np.pi * xx / (width * rng.uniform(0.5, 1.5)) + rng.uniform(0, 2 * np.pi)
    )
    canvas = np.where((yy < horizon)[..., None], upper, lower).astype(np.float32)
    canvas *= 1.0 + 0.12 * _smooth_noise(rng, height, width, 5)[..., None]
    for _ in range(rng.integers(0, 3)):  # clutter: low-saturation blobs, not of any class
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.05, 0.2) * height, rng.uniform(0.05, 0.2) * width
        blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        colour = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.3), rng.uniform(0.2, 0.9))
        canvas[blob] = np.asarray(colour, dtype=np.float32)
    grain = _smooth_noise(rng, height, width, max(8, max(height, width) // 3))
    canvas *= 1.0 + 0.06 * grain[..., None]
    return canvas


@dataclass
class _Placed:
    """One drawn object: its full (unoccluded) body and head pixels and its metadata."""

    style: ObjectStyle
    body: np.ndarray  # [H, W] bool, body without head
    head: np.ndarray  # [H, W] bool
    rgb: np.ndarray  # [H, W, 3] float32, the object's colours (valid where body | head)


def _render_object(
    rng: np.random.Generator, style: ObjectStyle, height: int, width: int, small: bool
) -> _Placed:
    long_side = max(height, width)
    semi_major = long_side * rng.uniform(0.15, 0.27) * (0.55 if small else 1.0)
    semi_minor = semi_major * rng.uniform(0.55, 0.7)
    head_radius = semi_minor * rng.uniform(0.5, 0.62)
    angle = rng.uniform(0, np.pi)
    side = 1.0 if rng.uniform() < 0.5 else -1.0
    cx, cy = rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)  # along the body
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)  # across the body
    p = style.body_exponent
    body_all = np.abs(u / semi_major) ** p + np.abs(v / semi_minor) ** p <= 1.0
    hu, hv = u - side * (semi_major + 0.25 * head_radius), v  # head-centred coordinates
    head = hu**2 + hv**2 <= head_radius**2
    body = body_all & ~head

    brightness = rng.uniform(0.8, 1.15)
    body_rgb = np.clip(np.asarray(style.body_rgb) + rng.uniform(-0.04, 0.04, 3), 0, 1)
    phase = rng.uniform(0, 2 * np.pi)
    if style.body_texture == "stripes":
        texture = 1.0 + 0.18 * np.sin(2 * np.pi * v / (0.45 * semi_minor) + phase)
    elif style.body_texture == "hatch":
        texture = 1.0 + 0.1 * (
            np.sin(2 * np.pi * u / (0.3 * semi_major)) + np.sin(2 * np.pi * v / (0.35 * semi_minor))
        )
    elif style.body_texture == "mottle":
        texture = 1.0 + 0.2 * _smooth_noise(rng, height, width, max(4, int(long_side / semi_minor * 3)))
    else:  # spots
        wave = np.sin(2 * np.pi * u / (0.3 * semi_major)) * np.sin(2 * np.pi * v / (0.3 * semi_minor) + phase)
        texture = 1.0 - 0.3 * (wave > 0.55)
    shading = 1.0 - 0.18 * np.clip(v / semi_minor, -1, 1)  # light from one side
    rgb = (body_rgb * (brightness * texture * shading)[..., None]).astype(np.float32)

    head_rgb = np.clip(np.asarray(style.head_rgb) + rng.uniform(-0.03, 0.03, 3), 0, 1)
    dark_rgb = np.asarray(style.head_dark_rgb)
    dark = _head_pattern(style, hu * side, hv, head_radius, angle)
    head_colours = np.where(dark[..., None], dark_rgb, head_rgb) * brightness
    rgb[head] = head_colours[head]
    return _Placed(style=style, body=body, head=head, rgb=np.clip(rgb, 0, 1))


def _head_pattern(
    style: ObjectStyle, hu: np.ndarray, hv: np.ndarray, radius: float, angle: float
) -> np.ndarray:
    """Where the head shows its dark colour, [H, W] bool (head-centred coordinates, facing +u)."""
    period = 0.5 * radius
    if style.head_pattern == "checker":
        return (np.floor(hu / period) + np.floor(hv / period)) % 2 == 1
    if style.head_pattern == "dots":
        du = np.mod(hu, 1.2 * period) - 0.6 * period
        dv = np.mod(hv, 1.2 * period) - 0.6 * period
        return du**2 + dv**2 < (0.3 * period) ** 2
    if style.head_pattern == "stripes":
        along = hu * np.cos(style.head_angle) + hv * np.sin(style.head_angle)
        return np.sin(2 * np.pi * along / (0.9 * period)) > 0
    if style.head_pattern == "rings":
        return np.sin(2 * np.pi * np.sqrt(hu**2 + hv**2) / (0.8 * period)) > 0.2
    # eyes: two dark dots on the front half and a dark mouth line
    eye = 0.2 * radius
    eyes = ((hu - 0.3 * radius) ** 2 + (np.abs(hv) - 0.35 * radius) ** 2) < eye**2
    mouth = (np.abs(hv) < 0.3 * radius) & (np.abs(hu - 0.7 * radius) < 0.08 * radius + 0.5)
    return eyes | mouth


def _image_size(
    rng: np.random.Generator,
    long_side: tuple[int, int],
    short_ratio: tuple[float, float],
    portrait_prob: float,
) -> tuple[int, int]:
    long_px = int(rng.integers(long_side[0], long_side[1] + 1))
    short_px = max(8, int(round(long_px * rng.uniform(*short_ratio))))
    return (long_px, short_px) if rng.uniform() < portrait_prob else (short_px, long_px)


@dataclass
class SyntheticImage:
    """One generated sample: the picture, its label map, and its objects for the XML."""

    image: np.ndarray  # [H, W, 3] uint8
    mask: np.ndarray  # [H, W] uint8 class indices (no boundary band)
    objects: list[dict]  # name, difficult, truncated, bbox and head bbox (1-based, inclusive)


def render_image(
    rng: np.random.Generator,
    styles: Sequence[ObjectStyle],
    long_side: tuple[int, int] = (96, 128),
    short_ratio: tuple[float, float] = (0.66, 0.8),
    portrait_prob: float = 0.3,
    max_objects: int = 3,
) -> SyntheticImage:
    """Draw one image with 1..``max_objects`` objects whose full extents overlap little."""
    height, width = _image_size(rng, long_side, short_ratio, portrait_prob)
    canvas = _background(rng, height, width)
    num_objects = int(rng.integers(1, max_objects + 1))
    placed: list[_Placed] = []
    for _ in range(num_objects):
        style = styles[int(rng.integers(len(styles)))]
        small = rng.uniform() < 0.1
        for _attempt in range(30):
            candidate = _render_object(rng, style, height, width, small)
            area = (candidate.body | candidate.head).sum()
            if area == 0:
                continue
            if all(
                ((candidate.body | candidate.head) & (other.body | other.head)).sum()
                < 0.15 * min(area, (other.body | other.head).sum())
                for other in placed
            ):
                placed.append(candidate)
                break

    mask = np.zeros((height, width), dtype=np.uint8)
    instance = np.zeros((height, width), dtype=np.int32)
    for number, obj in enumerate(placed, start=1):  # later objects occlude earlier ones
        pixels = obj.body | obj.head
        canvas[pixels] = obj.rgb[pixels]
        mask[pixels] = obj.style.class_index
        instance[pixels] = number

    # Camera: slight blur and sensor noise, then 8 bits.
    blurred = ndimage.gaussian_filter(canvas, sigma=(0.6, 0.6, 0))
    noisy = blurred + rng.normal(0.0, 0.012, size=blurred.shape)
    image = np.clip(np.round(noisy * 255.0), 0, 255).astype(np.uint8)

    objects = []
    for number, obj in enumerate(placed, start=1):
        visible = instance == number
        if not visible.any():
            continue
        full_area = int((obj.body | obj.head).sum())
        objects.append(
            {
                "name": CLASS_NAMES[obj.style.class_index - 1],
                "bbox": _bbox(visible),
                "head_bbox": _bbox(visible & obj.head) if (visible & obj.head).any() else None,
                "difficult": int(visible.sum() < 0.025 * height * width),
                "truncated": int(_touches_border(obj.body | obj.head) or visible.sum() < 0.8 * full_area),
            }
        )
    return SyntheticImage(image=image, mask=mask, objects=objects)


def _bbox(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """(xmin, ymin, xmax, ymax), 1-based and inclusive as in VOC XML."""
    rows, cols = np.flatnonzero(pixels.any(1)), np.flatnonzero(pixels.any(0))
    return int(cols[0]) + 1, int(rows[0]) + 1, int(cols[-1]) + 1, int(rows[-1]) + 1


def _touches_border(pixels: np.ndarray) -> bool:
    return bool(pixels[0].any() or pixels[-1].any() or pixels[:, 0].any() or pixels[:, -1].any())


def add_boundary_band(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """VOC-style ``SegmentationClass``: 255 on every pixel whose (2·radius+1)² neighbourhood holds
    more than one label (object/background and object/object edges), [H, W] uint8."""
    if radius <= 0:
        return mask.copy()
    size = 2 * radius + 1
    band = ndimage.maximum_filter(mask, size=size) != ndimage.minimum_filter(mask, size=size)
    banded = mask.copy()
    banded[band] = IGNORE_INDEX
    return banded


# ---------------------------------------------------------------------------------------------
# Writing the VOC tree
# ---------------------------------------------------------------------------------------------
def _annotation_xml(image_id: str, height: int, width: int, objects: Sequence[dict]) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "advcam-pl synthetic"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "1"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj["name"]
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = str(obj["truncated"])
        ET.SubElement(node, "difficult").text = str(obj["difficult"])
        _bndbox(node, obj["bbox"])
        if obj["head_bbox"] is not None:  # a part, as VOC's person layout annotates heads
            part = ET.SubElement(node, "part")
            ET.SubElement(part, "name").text = "head"
            _bndbox(part, obj["head_bbox"])
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def _bndbox(parent: ET.Element, bbox: Sequence[int]) -> None:
    box = ET.SubElement(parent, "bndbox")
    for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), bbox):
        ET.SubElement(box, tag).text = str(value)


def generate_dataset(
    root: str | os.PathLike,
    seed: int = 0,
    num_train: int = 200,
    num_val: int = 60,
    num_test: int = 20,
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    classes_per_body: int = 2,
    long_side: Sequence[int] = (96, 128),
    short_ratio: Sequence[float] = (0.66, 0.8),
    portrait_prob: float = 0.3,
    max_objects: int = 3,
    train_fraction: float = 0.5,
    boundary_radius: int = 1,
    jpeg_quality: int = 90,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic VOC2012-layout tree under ``root``; return :func:`summary` of it.

    ``num_train`` images form ``train_aug``; a ``train_fraction`` subset of them is ``train``
    (VOC's 1,464 ⊂ 10,582). ``long_side`` is the (min, max) longer image side in pixels,
    ``short_ratio`` the shorter/longer side ratio, ``portrait_prob`` the share of portrait images.
    The list files are written last, so a tree with ``ImageSets/Segmentation`` is complete.
    """
    root = Path(root)
    classes = tuple(classes)
    unknown = [name for name in classes if name not in CLASS_NAMES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct VOC class names, got {list(classes)}")
    if min(num_train, num_val) < 1 or num_test < 0:
        raise ValueError("need num_train >= 1, num_val >= 1, num_test >= 0")
    if (root / LIST_DIR).exists() and not overwrite:
        raise FileExistsError(f"{root / LIST_DIR} exists; pass overwrite=True (--overwrite) to regenerate")

    styles = class_styles(classes, classes_per_body)
    render_kwargs = dict(
        long_side=(int(long_side[0]), int(long_side[1])),
        short_ratio=(float(short_ratio[0]), float(short_ratio[1])),
        portrait_prob=float(portrait_prob),
        max_objects=int(max_objects),
    )
    ids = [f"syn_{index:06d}" for index in range(num_train + num_val + num_test)]
    train_aug_ids, val_ids = ids[:num_train], ids[num_train : num_train + num_val]
    test_ids = set(ids[num_train + num_val :])
    num_train_subset = min(num_train, max(1, round(train_fraction * num_train)))
    subset = np.random.default_rng([seed, 1 << 30]).permutation(num_train)[:num_train_subset]
    train_ids = [train_aug_ids[i] for i in sorted(subset)]
    voc_ids = set(train_ids) | set(val_ids)  # ids with a VOC SegmentationClass mask

    for folder in (IMAGE_DIR, ANNOTATION_DIR, MASK_DIR, MASK_AUG_DIR):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index, image_id in enumerate(ids):
        sample = render_image(np.random.default_rng([seed, index]), styles, **render_kwargs)
        Image.fromarray(sample.image).save(root / IMAGE_DIR / f"{image_id}.jpg", quality=int(jpeg_quality))
        if image_id in test_ids:
            continue  # as VOC test: no masks, no object annotations
        height, width = sample.mask.shape
        (root / ANNOTATION_DIR / f"{image_id}.xml").write_text(
            _annotation_xml(image_id, height, width, sample.objects)
        )
        if image_id in voc_ids:
            banded = add_boundary_band(sample.mask, boundary_radius)
            palette_image(banded).save(root / MASK_DIR / f"{image_id}.png")
            palette_image(banded).save(root / MASK_AUG_DIR / f"{image_id}.png")
        else:
            palette_image(sample.mask).save(root / MASK_AUG_DIR / f"{image_id}.png")

    list_dir = root / LIST_DIR
    list_dir.mkdir(parents=True, exist_ok=True)
    lists = {"train_aug": train_aug_ids, "train": train_ids, "val": val_ids, "test": sorted(test_ids)}
    for split, split_ids in lists.items():
        if not split_ids:
            continue  # num_test=0: no test list (an empty list would be a layout error)
        (list_dir / f"{split}.txt").write_text("".join(f"{i}\n" for i in split_ids))

    params = dict(
        seed=int(seed), num_train=num_train, num_val=num_val, num_test=num_test, classes=list(classes),
        classes_per_body=classes_per_body, train_fraction=train_fraction, boundary_radius=boundary_radius,
        jpeg_quality=jpeg_quality, **{k: list(v) if isinstance(v, tuple) else v for k, v in render_kwargs.items()},
    )  # fmt: skip
    counts = summary(root)
    (root / "synthetic.json").write_text(json.dumps({"params": params, **counts}, indent=2) + "\n")
    return {"root": str(root), "params": params, **counts}


def summary(root: str | os.PathLike) -> dict:
    """Counts of a VOC-layout tree (synthetic or real), per split list found:
    ``{"splits": {split: {"images", "masks", "labelled", "class_images": {class: n}}}}``.

    ``class_images`` counts the images whose labels hold a class (XML, else mask).
    """
    root = Path(root)
    splits = {}
    known_order = {"train_aug": 0, "train": 1, "val": 2, "test": 3}
    list_files = sorted((root / LIST_DIR).glob("*.txt"), key=lambda p: (known_order.get(p.stem, 4), p.stem))
    for list_file in list_files:
        reader = VOCReader(root, list_file.stem)
        class_images = np.zeros(len(CLASS_NAMES), dtype=np.int64)
        masks = labelled = 0
        for image_id in reader.ids:
            masks += reader.has_mask(image_id)
            if reader.has_labels(image_id):
                labelled += 1
                class_images += reader.labels(image_id).astype(np.int64)
        splits[list_file.stem] = {
            "images": len(reader.ids),
            "masks": int(masks),
            "labelled": int(labelled),
            "class_images": {name: int(n) for name, n in zip(CLASS_NAMES, class_images) if n > 0},
        }
    return {"splits": splits}


def format_summary(counts: dict) -> str:
    """A small text table of :func:`summary`."""
    splits = counts["splits"]
    names = sorted(
        {name for split in splits.values() for name in split["class_images"]}, key=CLASS_NAMES.index
    )
    width = max([10, *(len(split) + 2 for split in splits)])
    header = f"{'split':<{width}}{'images':>8}{'masks':>8}{'labels':>8}  " + " ".join(
        f"{n[:7]:>7}" for n in names
    )
    rows = [header]
    for split, c in splits.items():
        per_class = " ".join(f"{c['class_images'].get(n, 0):>7}" for n in names)
        rows.append(f"{split:<{width}}{c['images']:>8}{c['masks']:>8}{c['labelled']:>8}  {per_class}")
    return "\n".join(rows)


def summarize(root: str | os.PathLike) -> str:
    """:func:`summary` of ``root`` as the text table that ``--summary`` prints."""
    return format_summary(summary(root))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m advcam_pl.data.synthetic", description=__doc__.split("\n")[0]
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="folder to write the VOC2012-layout tree into")
    target.add_argument("--summary", type=Path, metavar="DIR", help="print the counts of an existing tree")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=200, help="train_aug images")
    parser.add_argument("--num-val", type=int, default=60)
    parser.add_argument("--num-test", type=int, default=20)
    parser.add_argument("--long-side", type=int, nargs=2, default=(96, 128), metavar=("MIN", "MAX"))
    parser.add_argument(
        "--classes", default=",".join(DEFAULT_CLASSES), help="comma-separated VOC class names"
    )
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.summary is not None:
        print(summarize(args.summary))
        return 0
    counts = generate_dataset(
        args.out, seed=args.seed, num_train=args.num_train, num_val=args.num_val, num_test=args.num_test,
        long_side=args.long_side, classes=[c.strip() for c in args.classes.split(",") if c.strip()],
        overwrite=args.overwrite,
    )  # fmt: skip
    print(f"wrote {args.out}")
    print(format_summary(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
