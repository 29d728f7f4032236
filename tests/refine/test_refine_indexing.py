"""PathIndex against a brute-force enumeration of pairs within the radius and their path pixels."""

import numpy as np
import pytest
import torch

from advcam_pl.refine.indexing import PathIndex, edge_to_affinity, path_coordinates, search_directions


def brute_directions(radius):
    return {(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
            if 0 < dy * dy + dx * dx < radius * radius and (dy > 0 or (dy == 0 and dx > 0))}


def brute_path(dy, dx):
    """Grid points of the bounding box within distance < 1 of the line through 0 and (dy, dx)."""
    norm = np.hypot(dy, dx)
    return {(y, x) for y in range(min(0, dy), max(0, dy) + 1) for x in range(min(0, dx), max(0, dx) + 1)
            if abs(dy * x - dx * y) / norm < 1 - 1e-12}


@pytest.mark.parametrize("radius", [2, 3, 5, 10])
def test_search_directions_are_one_half_disk(radius):
    dirs = search_directions(radius)
    assert len(dirs) == len(set(dirs))
    assert set(dirs) == brute_directions(radius)
    # Each unordered neighbour pair exactly once: d and -d never both.
    assert not {(-dy, -dx) for dy, dx in dirs} & set(dirs)


@pytest.mark.parametrize("radius", [3, 5, 10])
def test_paths_hold_the_pixels_near_the_segment_destination_first(radius):
    for dy, dx in search_directions(radius):
        coords = path_coordinates((dy, dx))
        assert set(coords) == brute_path(dy, dx)
        assert coords[0] == (dy, dx) and (0, 0) in coords
    assert path_coordinates((0, 3)) == [(0, 3), (0, 2), (0, 1), (0, 0)]
    assert set(path_coordinates((2, 2))) == {(0, 0), (1, 1), (2, 2), (0, 1), (1, 0), (1, 2), (2, 1)}


@pytest.mark.parametrize("radius,size", [(3, (9, 12)), (5, (11, 13))])
def test_flat_indices_match_brute_force(radius, size):
    h, w = size
    pi = PathIndex(radius, size)
    rf = radius - 1
    expected_src = [y * w + x for y in range(h - rf) for x in range(rf, w - rf)]
    assert pi.src_indices.tolist() == expected_src
    assert pi.dst_indices.shape == (pi.num_directions, len(expected_src))
    # Every path pixel of every (direction, source), group by group, in search_dst order.
    d = 0
    for group, paths in zip(pi.path_indices, pi.search_paths):
        for k in range(group.shape[0]):
            dy, dx = pi.search_dst[d]
            assert tuple(paths[k, 0]) == (dy, dx)
            for n, s in enumerate(pi.src_indices):
                y, x = divmod(int(s), w)
                assert 0 <= y + dy < h and 0 <= x + dx < w  # every neighbour is on the map
                assert pi.dst_indices[d, n] == (y + dy) * w + (x + dx)
                on_path = {divmod(int(i), w) for i in group[k, :, n]}
                assert on_path == {(y + cy, x + cx) for cy, cx in brute_path(dy, dx)}
            d += 1
    assert d == pi.num_directions


def test_pairs_cover_every_neighbour_pair_of_the_sources_once():
    radius, (h, w) = 4, (10, 14)
    pi = PathIndex(radius, (h, w))
    pairs = {(int(s), int(t)) for s, col in zip(pi.src_indices, pi.dst_indices.T) for t in col}
    assert len(pairs) == pi.num_sources * pi.num_directions
    brute = set()
    for s in pi.src_indices:
        y, x = divmod(int(s), w)
        for dy, dx in brute_directions(radius):
            brute.add((int(s), (y + dy) * w + x + dx))
    assert pairs == brute


def test_pair_displacement_is_source_minus_destination():
    pi = PathIndex(3, (8, 10))
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(10.0), indexing="ij")
    # A field equal to minus the position: disp(src) - disp(dst) = dst - src = the offset.
    field = -torch.stack([yy, xx])[None]
    pair = pi.pair_displacement(field)
    assert pair.shape == (1, 2, pi.num_directions, pi.num_sources)
    assert torch.allclose(pair, pi.displacement_target().expand_as(pair))


def test_edge_to_affinity_is_one_minus_max_on_path():
    torch.manual_seed(0)
    pi = PathIndex(3, (7, 9))
    edge = torch.rand(2, 7, 9)
    aff = edge_to_affinity(edge, pi.path_indices)
    assert aff.shape == (2, pi.num_directions, pi.num_sources)
    flat = edge.reshape(2, -1)
    d = 0
    for group in pi.path_indices:
        for k in range(group.shape[0]):
            expected = 1 - flat[:, torch.from_numpy(group[k])].amax(dim=1)
            assert torch.allclose(aff[:, d], expected)
            d += 1


def test_too_small_map_is_rejected():
    with pytest.raises(ValueError, match="too small"):
        PathIndex(10, (8, 30))
