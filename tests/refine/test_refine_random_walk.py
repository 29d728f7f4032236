"""Affinities from boundaries, the random walk (sparse vs dense), and pseudo-mask labelling."""

import numpy as np
import pytest
import torch

from advcam_pl.refine.indexing import path_coordinates, search_directions
from advcam_pl.refine.random_walk import (
    pair_affinities,
    propagate_to_edge,
    sem_seg_labels,
    transition_matrix_dense,
)


def brute_affinities(edge, radius):
    h, w = edge.shape
    out = {}
    for y in range(h):
        for x in range(w):
            for dy, dx in search_directions(radius):
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    path = [edge[y + cy, x + cx] for cy, cx in path_coordinates((dy, dx))]
                    out[(y * w + x, (y + dy) * w + x + dx)] = 1 - max(path)
    return out


@pytest.mark.parametrize("radius", [3, 5])
def test_pair_affinities_match_brute_force(radius):
    edge = torch.rand(9, 11, generator=torch.Generator().manual_seed(radius))
    src, dst, aff = pair_affinities(edge, radius)
    got = {(int(s), int(t)): float(a) for s, t, a in zip(src, dst, aff)}
    expected = brute_affinities(edge.numpy(), radius)
    assert got.keys() == expected.keys()
    assert all(abs(got[k] - expected[k]) < 1e-6 for k in got)


def vertical_wall(h=12, w=16, col=8):
    edge = torch.zeros(h, w)
    edge[:, col] = 1.0
    return edge


def test_affinity_is_low_across_a_boundary_and_high_within_a_region():
    edge = vertical_wall()
    src, dst, aff = pair_affinities(edge, 5)
    xs, xd = src % 16, dst % 16
    across = ((xs < 8) & (xd > 8)) | ((xs > 8) & (xd < 8))
    within = ((xs < 8) & (xd < 8)) | ((xs > 8) & (xd > 8))
    assert across.any() and within.any()
    assert torch.all(aff[across] == 0)
    assert torch.all(aff[within] == 1)


def test_transition_matrix_columns_sum_to_one():
    trans = transition_matrix_dense(torch.rand(6, 7), radius=3, beta=10)
    assert torch.allclose(trans.sum(0), torch.ones(42), atol=1e-5)


def test_random_walk_spreads_within_its_region_and_not_across_the_boundary():
    h, w = 20, 20
    edge = torch.zeros(h, w)
    edge[3, 3:15] = edge[14, 3:15] = 1.0  # a closed square outline, inside rows/cols 4..13
    edge[3:15, 3] = edge[3:15, 14] = 1.0
    seed = torch.zeros(1, h, w)
    seed[0, 8, 8] = 1.0
    rw = propagate_to_edge(seed, edge, radius=5, beta=10, exp_times=8)[0]
    inside = torch.zeros(h, w, dtype=torch.bool)
    inside[4:14, 4:14] = True
    assert torch.all(rw[inside] > 1e-4)
    assert torch.all(rw[~inside] == 0)
    # 256 steps mix the 10x10 room: the walk is nearly flat inside.
    assert rw[inside].max() / rw[inside].min() < 1.5


@pytest.mark.parametrize("exp_times", [3, 8])
def test_sparse_and_dense_random_walks_agree(exp_times):
    gen = torch.Generator().manual_seed(exp_times)
    edge = torch.rand(11, 14, generator=gen) ** 3
    edge[:, 6] = 0.9
    cams = torch.rand(3, 11, 14, generator=gen)
    # The same product in another order: equal up to rounding (float64 ~1e-14, float32 ~1e-5).
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-4)):
        sparse = propagate_to_edge(cams.to(dtype), edge.to(dtype), exp_times=exp_times, method="sparse")
        dense = propagate_to_edge(cams.to(dtype), edge.to(dtype), exp_times=exp_times, method="dense")
        assert sparse.dtype == dtype
        assert (sparse - dense).abs().max() <= tol * dense.abs().max()


def test_one_step_multiplies_the_masked_cams_by_the_transition_matrix():
    cams = torch.rand(2, 8, 9)
    edge = torch.rand(8, 9)
    one_step = propagate_to_edge(cams, edge, radius=3, exp_times=0)
    trans = transition_matrix_dense(edge, radius=3)
    expected = (cams * (1 - edge)).reshape(2, -1) @ trans
    assert torch.allclose(one_step.reshape(2, -1), expected, atol=1e-6)


def test_sem_seg_labels_map_keys_and_background():
    h4, w4 = 6, 8
    cams = torch.zeros(2, h4, w4)
    cams[0, :, :3] = 1.0
    cams[1, :, 5:] = 0.8
    edge = torch.zeros(h4, w4)
    edge[:, 4] = 1.0  # separates class 0 (left) from class 1 (right)
    labels = sem_seg_labels(cams, np.array([2, 14]), edge, (22, 30), exp_times=3, bg_threshold=0.25)
    assert labels.shape == (22, 30) and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 3, 15}
    assert labels[10, 2] == 3 and labels[10, 28] == 15


def test_sem_seg_labels_without_classes_are_background():
    labels = sem_seg_labels(np.zeros((0, 5, 6), np.float32), np.zeros(0, np.int64), torch.zeros(5, 6), (18, 21))
    assert labels.shape == (18, 21) and not labels.any()


def test_cam_power_sharpens_the_walk_input():
    cams = torch.full((1, 4, 4), 0.5)
    edge = torch.zeros(4, 4)
    a = propagate_to_edge(cams.pow(1.5), edge, radius=3, exp_times=1)
    b = sem_seg_labels(cams, [0], edge, (16, 16), exp_times=1, cam_power=1.5)
    assert b.shape == (16, 16) and torch.isfinite(a).all()


def test_mismatched_boundary_map_is_rejected():
    with pytest.raises(ValueError, match="does not match"):
        propagate_to_edge(torch.rand(1, 5, 5), torch.rand(5, 6))
