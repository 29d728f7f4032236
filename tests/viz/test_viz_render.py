"""Overlay rendering: palette colours, heatmap colours, panel shapes and the climb strip layout."""

import numpy as np
import pytest

from advcam_pl.viz.render import (
    CAPTION_HEIGHT,
    GAP,
    climb_strip,
    colorize,
    jet,
    overlay_map,
    overlay_mask,
    row,
    strip_steps,
)


def test_colorize_uses_the_voc_palette():
    mask = np.array([[0, 1], [15, 255]], np.uint8)
    rgb = colorize(mask)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 0]  # background
    assert rgb[0, 1].tolist() == [128, 0, 0]  # aeroplane
    assert rgb[1, 0].tolist() == [192, 128, 128]  # person
    assert rgb[1, 1].tolist() == [224, 224, 192]  # ignore


def test_overlay_mask_keeps_background_and_blends_objects():
    image = np.full((4, 5, 3), 100, np.uint8)
    mask = np.zeros((4, 5), np.uint8)
    mask[1, 2] = 1
    out = overlay_mask(image, mask, alpha=0.5)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert (out[mask == 0] == 100).all()
    assert out[1, 2].tolist() == [114, 50, 50]  # (100 + 128) / 2, 100 / 2, 100 / 2
    with pytest.raises(ValueError, match="does not match the image"):
        overlay_mask(image, np.zeros((3, 5), np.uint8))


def test_jet_goes_from_blue_to_red_and_overlay_map_blends_it():
    low, high = jet(np.array([0.0]))[0], jet(np.array([1.0]))[0]
    assert low.tolist() == [0, 0, 128] and high.tolist() == [128, 0, 0]
    assert jet(np.array([0.5]))[0, 1] == 255  # green peaks in the middle
    image = np.full((2, 3, 3), 40, np.uint8)
    values = np.full((2, 3), 1.0, np.float32)
    np.testing.assert_array_equal(overlay_map(image, values, alpha=0.0), image)
    np.testing.assert_array_equal(overlay_map(image, values, alpha=1.0), jet(values))


def test_row_adds_captions_and_gaps():
    panels = [np.zeros((10, 7, 3), np.uint8), np.zeros((10, 5, 3), np.uint8)]
    out = row(panels, ["a", "b"])
    assert out.shape == (10 + CAPTION_HEIGHT, 7 + GAP + 5, 3)
    with pytest.raises(ValueError, match="2 captions for 1 panels"):
        row(panels[:1], ["a", "b"])


def test_climb_strip_has_a_row_per_class_and_a_column_per_step():
    image = np.zeros((8, 6, 3), np.uint8)
    high_res = np.random.default_rng(0).random((5, 2, 8, 6)).astype(np.float32)  # J = 5, n = 2
    steps = strip_steps(5, 3)
    assert steps == [0, 2, 4]
    strip = climb_strip(image, high_res, ["cat", "dog"], steps)
    assert strip.shape == (2 * (8 + CAPTION_HEIGHT) + GAP, 3 * 6 + 2 * GAP, 3)
    # the last column of the first row is step 4 of class 0
    last = strip[CAPTION_HEIGHT:CAPTION_HEIGHT + 8, 2 * (6 + GAP):]
    np.testing.assert_array_equal(last, overlay_map(image, high_res[4, 0]))
    assert strip_steps(28, 6)[0] == 0 and strip_steps(28, 6)[-1] == 27 and len(strip_steps(28, 6)) == 6
    assert strip_steps(2, 6) == [0, 1]
