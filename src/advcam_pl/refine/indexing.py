"""Pixel pairs within a radius and the pixels on the straight path between them (IRN's ``PathIndex``).

IRN relates every pixel to its neighbours within ``radius`` on the stride-4 feature grid. The
neighbours are listed once per unordered pair: the *search directions* are the offsets
``(dy, dx)`` with ``0 < dy² + dx² < radius²`` in the lower half plane (``dy > 0``, or ``dy == 0`` and
``dx > 0``). The *path* of a direction is every grid point in the bounding box of ``(0, 0)`` and
``(dy, dx)`` whose distance to the line through them is below one pixel, the source ``(0, 0)`` and
the destination included. The affinity of a pair is ``1 − max B`` over its path (B: boundary map).

On a map of size ``(height, width)`` the *source* pixels are those whose every neighbour lies on
the map: rows ``[0, height − r')`` and columns ``[r', width − r')`` with ``r' = ceil(radius) − 1``.
Indices are flat (row-major) indices into the ``height × width`` map.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F


def search_directions(radius: int) -> list[tuple[int, int]]:
    """The offsets ``(dy, dx)`` of one half disk, in IRN's enumeration order."""
    radius = int(radius)
    directions = [(0, dx) for dx in range(1, radius)]
    for dy in range(1, radius):
        for dx in range(-radius + 1, radius):
            if dx * dx + dy * dy < radius * radius:
                directions.append((dy, dx))
    return directions


def path_coordinates(direction: tuple[int, int]) -> list[tuple[int, int]]:
    """Grid points on the segment ``(0, 0)`` → ``direction``, destination first, source last.

    A point of the bounding box belongs to the path when its squared distance to the line is < 1.
    """
    dy, dx = direction
    length_sq = dy * dy + dx * dx
    coords = []
    for y in range(min(0, dy), max(0, dy) + 1):
        for x in range(min(0, dx), max(0, dx) + 1):
            if (dy * x - dx * y) ** 2 / length_sq < 1:
                coords.append((y, x))
    # Stable sort, farthest (L1) first: the destination is the unique farthest point of the box.
    coords.sort(key=lambda c: -abs(c[0]) - abs(c[1]))
    return coords


class PathIndex:
    """Pairs within ``radius`` on a ``size = (height, width)`` grid, grouped by path length.

    Attributes:
        radius, radius_floor: the search radius and ``ceil(radius) − 1`` (the margin of sources).
        search_paths: per path length L, int64 ``[n_L, L, 2]`` path offsets (destination first).
        search_dst: int64 ``[D, 2]`` destination offsets ``(dy, dx)`` of all D directions, in the
            order of the concatenated groups (the order of every ``[.., D, N]`` tensor here).
        path_indices: per path length L, int64 ``[n_L, L, N]`` flat indices of the path pixels of
            each of the ``N`` sources.
        src_indices: int64 ``[N]`` flat indices of the sources.
        dst_indices: int64 ``[D, N]`` flat indices of each source's destination per direction.
    """

    def __init__(self, radius: int, size: tuple[int, int]):
        if int(radius) != radius or radius < 2:
            raise ValueError(f"radius must be an integer >= 2, got {radius}")
        self.radius = int(radius)
        self.radius_floor = int(math.ceil(radius) - 1)
        self.size = (int(size[0]), int(size[1]))
        height, width = self.size
        self.src_height = height - self.radius_floor
        self.src_width = width - 2 * self.radius_floor
        if self.src_height <= 0 or self.src_width <= 0:
            raise ValueError(f"a {height}x{width} map is too small for radius {radius}")

        by_length: dict[int, list[list[tuple[int, int]]]] = {}
        for direction in search_directions(self.radius):
            path = path_coordinates(direction)
            by_length.setdefault(len(path), []).append(path)
        self.search_paths = [np.asarray(by_length[n], dtype=np.int64) for n in sorted(by_length)]
        self.search_dst = np.concatenate([p[:, 0] for p in self.search_paths], axis=0)

        full = np.arange(height * width, dtype=np.int64).reshape(height, width)
        rf, sh, sw = self.radius_floor, self.src_height, self.src_width
        self.path_indices = []
        for paths in self.search_paths:
            # [n_L, L, N]: the pixel at offset (dy, dx) of every source.
            per_dir = [[full[dy : dy + sh, rf + dx : rf + dx + sw].reshape(-1) for dy, dx in p] for p in paths]
            self.path_indices.append(np.asarray(per_dir, dtype=np.int64))
        self.src_indices = full[:sh, rf : rf + sw].reshape(-1)
        self.dst_indices = np.concatenate([p[:, 0] for p in self.path_indices], axis=0)

    @property
    def num_directions(self) -> int:
        return len(self.search_dst)

    @property
    def num_sources(self) -> int:
        return len(self.src_indices)

    def crop_sources(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, C, H, W]`` → its values at the sources, ``[B, C, src_height, src_width]``."""
        rf = self.radius_floor
        return x[:, :, : self.src_height, rf : rf + self.src_width]

    def pair_displacement(self, disp: torch.Tensor) -> torch.Tensor:
        """``disp`` ``[B, 2, H, W]`` → ``disp[src] − disp[dst]`` per pair, ``[B, 2, D, N]``."""
        rf, sh, sw = self.radius_floor, self.src_height, self.src_width
        src = self.crop_sources(disp)
        dst = torch.stack([disp[:, :, dy : dy + sh, rf + dx : rf + dx + sw] for dy, dx in self.search_dst], 2)
        pair = src.unsqueeze(2) - dst
        return pair.reshape(pair.shape[0], pair.shape[1], pair.shape[2], -1)

    def displacement_target(self) -> torch.Tensor:
        """The offset of each direction as a float ``[1, 2, D, 1]`` (target of ``pair_displacement``)."""
        return torch.from_numpy(self.search_dst.T.copy()).float()[None, :, :, None]


@lru_cache(maxsize=16)
def cached_path_index(radius: int, height: int, width: int) -> PathIndex:
    """A :class:`PathIndex` per (radius, size), built once (training crops repeat the same size)."""
    return PathIndex(radius, (height, width))


def edge_to_affinity(edge: torch.Tensor, path_indices: list[torch.Tensor | np.ndarray]) -> torch.Tensor:
    """Boundary probabilities → pair affinities ``1 − max B`` over each pair's path.

    Args:
        edge: ``[B, H, W]`` (or ``[B, 1, H, W]``) boundary probabilities in [0, 1].
        path_indices: :attr:`PathIndex.path_indices` for the ``H × W`` grid.
    Returns:
        ``[B, D, N]`` affinities in [0, 1].
    """
    flat = edge.reshape(edge.shape[0], -1)
    affinities = []
    for ind in path_indices:
        ind = torch.as_tensor(ind, device=flat.device)
        on_path = flat[:, ind.reshape(-1)].view(flat.shape[0], *ind.shape)  # [B, n_L, L, N]
        affinities.append(1 - on_path.amax(dim=2))
    return torch.cat(affinities, dim=1)


def pad_for_pairs(edge: torch.Tensor, radius: int) -> torch.Tensor:
    """Pad ``[..., h, w]`` boundaries with 1 (no affinity) by ``radius`` left, right and below, so
    every pixel of the original map is a source (IRN's ``propagate_to_edge`` layout)."""
    return F.pad(edge, (radius, radius, 0, radius), mode="constant", value=1.0)
