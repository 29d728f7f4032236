"""Fig. 2 / Fig. 6 curves: seed mIoU per step, proportion of noise, pixel amplification ratio."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from advcam_testing import TinyCAMNet

from advcam_pl.advcam import adv_climb
from advcam_pl.advcam.analysis import ClimbStats
from advcam_pl.advcam.result import Trajectory
from advcam_pl.evaluation import sweep_thresholds


def handmade_trajectory() -> tuple[Trajectory, np.ndarray, np.ndarray]:
    """One class (VOC label 3) on a 4×4 image; step 1 adds two pixels, one of them GT background."""
    gt = np.zeros((4, 4), np.uint8)
    gt[:2, :2] = 3
    gt[2, 0] = 3
    gt[3, 3] = 255
    high_res = torch.zeros(2, 1, 4, 4)
    high_res[0, 0, :2, :2] = 1.0  # step 0: the discriminative 2×2 block
    high_res[1, 0] = high_res[0, 0]
    high_res[1, 0, 2, 0] = 0.6  # step 1 adds (2, 0): object
    high_res[1, 0, 2, 1] = 0.6  # and (2, 1): background
    high_res[1, 0, 3, 3] = 0.6  # and an ignored pixel
    attribution = torch.tensor([[[[4.0, 1.0], [1.0, 0.0]]], [[[5.0, 3.0], [2.0, 1.0]]]])  # [2, 1, 2, 2]
    trajectory = Trajectory(high_res=high_res, attribution=attribution, score=torch.zeros(2, 1), scale=1.0)
    return trajectory, np.array([2]), gt


def test_noise_proportion_and_seed_miou_by_hand():
    trajectory, keys, gt = handmade_trajectory()
    stats = ClimbStats(num_maps=2, thresholds=(0.25, 0.7), noise_threshold=0.25, tau=0.5)
    stats.update(trajectory, keys, gt)
    out = stats.summary()
    assert out["added_pixels"] == [0, 2]  # the ignored pixel does not count
    assert out["noise_proportion"] == [None, 0.5]
    # the seed curves agree with the evaluation package's threshold sweep
    for t in range(2):
        ref = sweep_thresholds([(trajectory.high_res[t].numpy(), keys, gt)], (0.25, 0.7))
        assert out["seed_miou_per_threshold"][t] == pytest.approx(ref["miou"])
        assert out["seed_miou"][t] == pytest.approx(ref["best_miou"])


def test_amplification_ratio_by_hand():
    trajectory, keys, _ = handmade_trajectory()
    stats = ClimbStats(num_maps=2, tau=0.5)
    stats.update(trajectory, keys, mask=None)  # regions over the whole image
    out = stats.summary()
    # D = {A_0/max > 0.5} = the 4.0 pixel: 5/4; N = the rest: (3 + 2 + 1)/(1 + 1 + 0) = 3
    assert out["amplification_discriminative"] == pytest.approx([1.0, 1.25])
    assert out["amplification_non_discriminative"] == pytest.approx([1.0, 3.0])


def test_stats_merge_by_state_sum():
    trajectory, keys, gt = handmade_trajectory()
    one, two = ClimbStats(2), ClimbStats(2)
    one.update(trajectory, keys, gt)
    two.update(trajectory, keys, gt)
    two.update(None, np.zeros(0, np.int64), gt)  # an image without classes
    merged = ClimbStats(2)
    merged.load_state({k: one.state()[k] + two.state()[k] for k in one.state()})
    assert merged.summary()["num_images"] == 3
    assert merged.summary()["added_pixels"] == [0, 4]


def test_stats_from_a_real_climb():
    model = TinyCAMNet(seed=2).eval()
    gen = torch.Generator().manual_seed(0)
    img = torch.randn(3, 40, 48, generator=gen)
    gt = np.zeros((40, 48), np.uint8)
    gt[8:30, 10:40] = 6
    result = adv_climb(model, img, [5], steps=4, scales=(1.0, 0.5), record_trajectory=True)
    stats = ClimbStats(num_maps=4)
    stats.update(result.trajectory, result.keys.numpy(), gt)
    out = stats.summary()
    assert len(out["seed_miou"]) == 4 and all(0 <= v <= 1 for v in out["seed_miou"])
    assert out["amplification_discriminative"][0] == pytest.approx(1.0)
    assert out["amplification_pairs"]["discriminative"] == 1
