"""Transforms: normalisation, PIL rescaling as the official code, the classifier's crops, scale views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from advcam_pl.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClassificationEvalTransform,
    ClassificationTrainTransform,
    denormalize,
    multiscale_images,
    normalize,
    random_crop,
    scale_image,
    scale_mask,
)


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_normalize_gives_chw_float_with_imagenet_statistics():
    mean_pixel = np.round(np.array(IMAGENET_MEAN) * 255).astype(np.uint8)
    img = np.broadcast_to(mean_pixel, (4, 6, 3)).copy()
    img[0, 0] = 255
    out = normalize(img)
    assert out.shape == (3, 4, 6) and out.dtype == torch.float32 and out.is_contiguous()
    assert out[:, 1:, 1:].abs().max() < 0.01
    expected = (1.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out[:, 0, 0].numpy(), expected, rtol=1e-5)


def test_denormalize_inverts_normalize():
    img = _image(5, 7)
    np.testing.assert_array_equal(denormalize(normalize(img)), img)


@pytest.mark.parametrize("scale", [0.5, 1.5, 2.0, 0.3])
def test_scale_image_is_pil_bicubic_to_rounded_size(scale):
    img = _image(5, 7)
    out = scale_image(img, scale)
    size = (int(np.round(5 * scale)), int(np.round(7 * scale)))
    assert out.shape == (*size, 3) and out.dtype == np.uint8
    expected = np.asarray(Image.fromarray(img).resize(size[::-1], Image.BICUBIC))
    np.testing.assert_array_equal(out, expected)


def test_scale_one_returns_the_image_unchanged():
    img = _image(5, 7)
    assert scale_image(img, 1.0) is img


def test_scale_mask_keeps_labels():
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 2:6] = 7
    mask[0, 0] = 255
    out = scale_mask(mask, 1.5)
    assert out.shape == (9, 12) and set(np.unique(out)) <= {0, 7, 255}


def test_train_transform_pads_small_images_with_zeros_at_a_random_offset():
    transform = ClassificationTrainTransform(crop_size=64, resize_long=(40, 40), hflip=True)
    out = transform(_image(30, 20), rng=np.random.default_rng(0))
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
    nonzero = (out != 0).any(0)
    rows, cols = np.flatnonzero(nonzero.any(1)), np.flatnonzero(nonzero.any(0))
    assert (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == (40, 27)  # long side 40, round(20 * 40/30)


def test_train_transform_crops_large_images_and_is_random():
    transform = ClassificationTrainTransform(crop_size=32, resize_long=(48, 64))
    rng = np.random.default_rng(0)
    img = _image(40, 60)
    views = [transform(img, rng=rng) for _ in range(4)]
    assert all(v.shape == (3, 32, 32) and (v != 0).all(0).all() for v in views)
    assert not all(torch.equal(views[0], v) for v in views[1:])
    again = ClassificationTrainTransform(crop_size=32, resize_long=(48, 64))(
        img, rng=np.random.default_rng(0)
    )
    assert torch.equal(again, views[0])


def test_random_crop_cuts_image_and_mask_alike():
    img = _image(10, 30)
    mask = np.arange(300, dtype=np.int64).reshape(10, 30).astype(np.uint8)
    crop_img, crop_mask = random_crop([img, mask], 16, [0, 255], rng=np.random.default_rng(1))
    assert crop_img.shape == (16, 16, 3) and crop_mask.shape == (16, 16)
    filled = (crop_mask == 255) & (crop_img == 0).all(-1)
    assert filled.sum() == 6 * 16  # 6 padded rows, 16 columns cut from 30


def test_eval_transform_fits_the_whole_image_into_the_crop():
    out = ClassificationEvalTransform(crop_size=32)(_image(20, 40))
    assert out.shape == (3, 32, 32)
    assert (out[:, 16:] == 0).all() and (out[:, :16] != 0).any()


def test_multiscale_images_are_normalised_views_per_scale():
    views = multiscale_images(_image(10, 15), (1.0, 0.5, 1.5, 2.0))
    assert [tuple(v.shape) for v in views] == [(3, 10, 15), (3, 5, 8), (3, 15, 22), (3, 20, 30)]
    assert all(v.dtype == torch.float32 for v in views)
