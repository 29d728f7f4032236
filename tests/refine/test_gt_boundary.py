"""Ground-truth boundaries on the stride-4 grid (the walk's ceiling, refine/gt_boundary.py)."""

import numpy as np
import torch

from advcam_pl.data.affinity import stride4_labels
from advcam_pl.refine.gt_boundary import grid_labels, gt_boundary_map
from advcam_pl.refine.random_walk import propagate_to_edge


def two_objects(height=48, width=64):
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[8:32, 8:28] = 3
    mask[8:32, 28:48] = 5  # touches class 3
    mask[36:44, 52:60] = 255  # an ignore region
    return mask


def test_grid_labels_sample_the_cell_centres_as_the_affinity_labels_do():
    mask = np.arange(10 * 9, dtype=np.uint8).reshape(10, 9)
    grid = grid_labels(mask)
    assert grid.shape == (3, 3)
    assert grid[0, 0] == mask[2, 2] and grid[1, 1] == mask[6, 6]
    assert grid[2, 2] == mask[9, 8]  # the last, partial cell: clipped to the image
    whole = np.arange(8 * 12, dtype=np.uint8).reshape(8, 12)
    np.testing.assert_array_equal(grid_labels(whole), stride4_labels(whole))


def test_gt_boundaries_close_every_object():
    mask = two_objects()
    edge = gt_boundary_map(mask)
    labels = grid_labels(mask)
    assert edge.shape == labels.shape == (12, 16) and edge.dtype == np.float32
    assert set(np.unique(edge)) == {0.0, 1.0}
    assert edge[labels == 255].all()
    assert not edge[labels == 3].all() and not edge[labels == 5].any()  # 5 > 3: the line is on 3's side
    assert not edge[0, 0] and not edge[-1, 0]
    for cls in (3, 5):
        seed = torch.zeros(1, *labels.shape)
        seed[0][torch.from_numpy((labels == cls) & (edge == 0))] = 1.0
        walked = propagate_to_edge(seed, torch.from_numpy(edge), radius=5, beta=10, exp_times=6)[0]
        outside = torch.from_numpy(labels != cls)
        assert walked[outside].sum() < 1e-6 * walked.sum(), f"class {cls} leaks through its boundary"


def test_without_objects_there_is_no_boundary():
    assert not gt_boundary_map(np.zeros((20, 30), np.uint8)).any()
