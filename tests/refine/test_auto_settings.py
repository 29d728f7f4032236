"""The rules that carry the VOC-tuned refinement settings to other data (refine/auto_settings.py)."""

import math

import numpy as np
import pytest
from PIL import Image

from advcam_pl.refine import auto_settings as rules


def test_voc_seed_threshold_gives_the_official_thresholds():
    fg, bg = rules.ir_label_thresholds(0.15)
    assert fg == pytest.approx(0.35) and bg == pytest.approx(0.15)
    assert rules.walk_background(0.15) == pytest.approx(0.25)
    # IRN's own values go through the same rule unchanged at VOC's threshold.
    assert rules.ir_label_thresholds(0.15, official=(0.30, 0.05)) == pytest.approx((0.30, 0.05))


def test_voc_grid_gives_the_official_walk_length_and_radius():
    assert rules.walk_exp_times(rules.VOC_GRID) == 8
    assert rules.irn_radius(rules.VOC_GRID) == 10
    assert rules.typical_grid([(375, 500)] * 3 + [(500, 375), (333, 500)]) == (94.0, 125.0)


def test_thresholds_rise_with_the_seed_threshold_and_keep_their_order():
    previous = (0.0, 0.0, 0.0)
    for best in np.linspace(0.05, 0.9, 18):
        fg, bg = rules.ir_label_thresholds(best)
        walk = rules.walk_background(best)
        assert 0 < bg < walk < fg < 1
        assert bg == pytest.approx(best)  # the official bg threshold is VOC's seed threshold
        assert fg > previous[0] and bg > previous[1] and walk > previous[2]
        previous = (fg, bg, walk)


def test_the_rule_is_a_power_map_of_the_cam_values():
    # Maps raised to a power γ move every threshold t to t ** γ: deriving from the new best
    # threshold must recover exactly that.
    gamma = 0.4
    best = 0.15**gamma
    assert rules.cam_scale_exponent(best) == pytest.approx(gamma)
    assert rules.walk_background(best) == pytest.approx(0.25**gamma)
    assert rules.ir_label_thresholds(best) == pytest.approx((0.35**gamma, 0.15**gamma))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5])
def test_a_threshold_outside_the_unit_interval_is_refused(bad):
    with pytest.raises(ValueError, match="best_threshold"):
        rules.ir_label_thresholds(bad)


def test_walk_length_and_radius_grow_with_the_grid():
    grids = [(12, 16), (24, 32), (36, 48), (47, 63), (94, 125), (188, 250)]
    steps = [rules.walk_exp_times(g) for g in grids]
    radii = [rules.irn_radius(g) for g in grids]
    assert steps == sorted(steps) and radii == sorted(radii)
    assert steps[-1] == 10 and radii[-1] == 20  # twice VOC's side: 4x the steps, twice the radius
    # Half VOC's side: a quarter of the steps (2 fewer doublings), half the radius.
    assert rules.walk_exp_times((47, 62.5)) == 6 and rules.irn_radius((47, 62.5)) == 5
    assert rules.irn_radius((4, 4)) == rules.MIN_IRN_RADIUS and rules.walk_exp_times((2, 2)) == 0


def test_grid_scale_is_the_geometric_mean_side():
    assert rules.grid_scale((94, 125)) == pytest.approx(1.0)
    assert rules.grid_scale((47, 62.5)) == pytest.approx(0.5)
    assert rules.grid_scale((125, 94)) == pytest.approx(1.0)  # portrait: same number of cells
    with pytest.raises(ValueError):
        rules.grid_scale((0, 10))


def test_typical_grid_is_the_median_image_in_stride_4_cells(tmp_path):
    sizes = [(96, 128), (120, 160), (130, 170), (200, 250), (90, 100)]
    assert rules.typical_grid(sizes) == (30.0, 40.0)  # the median area, ceil(120/4) x ceil(160/4)
    assert rules.typical_grid([(97, 129)]) == (math.ceil(97 / 4), math.ceil(129 / 4))
    with pytest.raises(ValueError, match="no images"):
        rules.typical_grid([])
    (tmp_path / "JPEGImages").mkdir()
    Image.new("RGB", (170, 130)).save(tmp_path / "JPEGImages" / "a.jpg")
    assert rules.image_sizes(tmp_path, ["a"]) == [(130, 170)]


def test_is_auto():
    assert rules.is_auto("auto") and rules.is_auto(" AUTO ")
    assert not rules.is_auto(0.25) and not rules.is_auto(None) and not rules.is_auto("0.25")
