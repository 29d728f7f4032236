"""Random walk over IRN's boundary-based affinities: CAMs → pseudo masks (IRN ``make_sem_seg_labels``).

On the stride-4 grid of an image (``h × w`` pixels, ``N = h·w``):

1. affinity ``a_ij = 1 − max B`` over the path between pixels ``i`` and ``j`` for pairs closer than
   ``radius`` (5), ``a_ii = 1``, 0 otherwise; ``A = a^β`` (β = 10);
2. transition ``T = A D⁻¹`` (columns sum to 1);
3. ``rw = (CAM ⊙ (1 − B)) · T^(2^exp_times)`` (row vectors, one per class; exp_times = 8);
4. upsample ×4 to the image, divide by the max, prepend a background plane (0.25), argmax.

IRN forms the dense ``N × N`` matrix and squares it ``exp_times`` times on the GPU: at 500×375
(N = 94·125 = 11,750) that is 552 MB per fp32 matrix (two alive while squaring: +1.1 GB peak on the
CPU) and ~1.6·10¹² flops per squaring. ``method="sparse"`` (default) instead multiplies ``rw`` by the
sparse ``T`` (≤ 69 non-zeros per column at radius 5) ``2^exp_times`` times: the same product
``rw · T · T ⋯ T`` in another order, O(2^exp_times · 69 · N) work and ~0.1 GB peak at 500×375
(1–2 s on two CPU cores). ``method="dense"`` is IRN's computation, kept as the reference.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from advcam_pl.refine.indexing import cached_path_index, edge_to_affinity, pad_for_pairs

METHODS = ("sparse", "dense")


def pair_affinities(edge: torch.Tensor, radius: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Affinities of the pixel pairs of an ``[h, w]`` boundary map that lie within ``radius``.

    As IRN: the map is padded with boundary 1 (affinity 0) so every pixel is a source, the path
    affinities are taken on the padded grid, and pairs touching the padding are dropped (their
    affinity is 0, and IRN crops them away from its dense matrix).

    Returns ``(src, dst, aff)``: flat indices into the ``h × w`` map ``[P]`` (int64) and
    affinities ``[P]`` (each unordered pair once, no self pairs).
    """
    height, width = edge.shape
    padded = pad_for_pairs(edge, radius)  # [h + r, w + 2r]
    hp, wp = padded.shape
    path_index = cached_path_index(int(radius), hp, wp)
    aff = edge_to_affinity(padded[None], path_index.path_indices)[0]  # [D, Ns]
    src = torch.as_tensor(path_index.src_indices, device=edge.device).expand_as(aff)
    dst = torch.as_tensor(path_index.dst_indices, device=edge.device)

    def to_image(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, x = index // wp, index % wp - radius
        inside = (y < height) & (x >= 0) & (x < width)
        return y * width + x, inside

    src_img, src_in = to_image(src)
    dst_img, dst_in = to_image(dst)
    keep = src_in & dst_in
    return src_img[keep], dst_img[keep], aff[keep]


def _affinity_entries(edge: torch.Tensor, radius: int, beta: float):
    """``(rows, cols, values)`` of ``A = a^β`` with both pair orders and the unit diagonal."""
    n = edge.numel()
    src, dst, aff = pair_affinities(edge, radius)
    aff = aff.pow(beta)
    diag = torch.arange(n, device=edge.device)
    rows = torch.cat([src, dst, diag])
    cols = torch.cat([dst, src, diag])
    values = torch.cat([aff, aff, torch.ones(n, device=edge.device, dtype=aff.dtype)])
    return rows, cols, values


def transition_matrix_dense(edge: torch.Tensor, radius: int = 5, beta: float = 10.0) -> torch.Tensor:
    """The column-normalised transition matrix ``T`` ``[N, N]`` of an ``[h, w]`` boundary map."""
    n = edge.numel()
    rows, cols, values = _affinity_entries(edge, radius, beta)
    affinity = torch.zeros(n, n, device=edge.device, dtype=values.dtype)
    affinity[rows, cols] = values
    return affinity / affinity.sum(dim=0, keepdim=True)


def transition_matrix_sparse_t(edge: torch.Tensor, radius: int = 5, beta: float = 10.0) -> torch.Tensor:
    """``Tᵀ`` of :func:`transition_matrix_dense` as a sparse CSR ``[N, N]`` (row j: column j of T)."""
    n = edge.numel()
    rows, cols, values = _affinity_entries(edge, radius, beta)
    col_sum = torch.zeros(n, device=edge.device, dtype=values.dtype).index_add_(0, cols, values)
    values = values / col_sum[cols]
    transposed = torch.sparse_coo_tensor(torch.stack([cols, rows]), values, (n, n), check_invariants=False)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        csr = transposed.coalesce().to_sparse_csr()
        # int32 indices: about twice as fast a CPU product as int64 (N is far below 2^31).
        return torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(), (n, n))


def propagate_to_edge(
    x: torch.Tensor,
    edge: torch.Tensor,
    radius: int = 5,
    beta: float = 10.0,
    exp_times: int = 8,
    method: str = "sparse",
) -> torch.Tensor:
    """Random walk of class maps within the boundaries (IRN ``indexing.propagate_to_edge``).

    Args:
        x: ``[n, h, w]`` non-negative class maps (stride-4 CAMs).
        edge: ``[h, w]`` boundary probabilities B.
        exp_times: the walk takes ``2^exp_times`` steps.
        method: ``"sparse"`` (iterate ``rw ← rw · T``) or ``"dense"`` (IRN: square ``T``).
    Returns:
        ``[n, h, w]`` ``(x ⊙ (1 − B)) · T^(2^exp_times)``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    n, height, width = x.shape
    if edge.shape != (height, width):
        raise ValueError(f"boundary map {tuple(edge.shape)} does not match the class maps {tuple(x.shape)}")
    edge = edge.to(x.dtype)
    seeds = (x * (1 - edge)).reshape(n, -1)  # [n, N]
    if method == "dense":
        trans = transition_matrix_dense(edge, radius, beta)
        for _ in range(exp_times):
            trans = trans @ trans
        rw = seeds @ trans
    else:
        trans_t = transition_matrix_sparse_t(edge, radius, beta)
        rw_t = seeds.t().contiguous()  # [N, n]: rw · T = (Tᵀ · rwᵀ)ᵀ
        for _ in range(2**exp_times):
            rw_t = trans_t @ rw_t
        rw = rw_t.t()
    return rw.reshape(n, height, width)


def sem_seg_labels(
    cams: torch.Tensor | np.ndarray,
    keys: Sequence[int] | np.ndarray,
    edge: torch.Tensor,
    image_size: tuple[int, int],
    *,
    radius: int = 5,
    beta: float = 10.0,
    exp_times: int = 8,
    bg_threshold: float = 0.25,
    cam_power: float = 1.0,
    method: str = "sparse",
) -> np.ndarray:
    """Pseudo mask ``[H, W]`` uint8 (0 background, ``keys + 1`` classes) from stride-4 CAMs.

    Args:
        cams: ``[n, h, w]`` max-normalised CAMs (the ``cam`` array of a CAM file) of the present
            classes, ``keys`` ``[n]`` their 0-based indices.
        edge: ``[h, w]`` boundary probabilities of the same grid (:meth:`IRN.edge_map`).
        image_size: ``(H, W)``; the walk is upsampled ×4 and cropped to it.
        cam_power: the official AdvCAM code walks on ``cam ** 1.5``; IRN on the CAMs (1.0).
        bg_threshold: value of the constant background plane after dividing by the max.

    An image without classes (``n = 0``) is all background.
    """
    height, width = image_size
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    if len(keys) == 0:
        return np.zeros((height, width), dtype=np.uint8)
    cams = torch.as_tensor(cams).to(device=edge.device, dtype=torch.float32)
    if cams.shape[0] != len(keys):
        raise ValueError(f"{cams.shape[0]} class maps for {len(keys)} keys")
    if cam_power != 1.0:
        cams = cams.pow(cam_power)
    rw = propagate_to_edge(cams, edge.float(), radius=radius, beta=beta, exp_times=exp_times, method=method)
    rw_up = F.interpolate(rw[:, None], scale_factor=4, mode="bilinear", align_corners=False)
    rw_up = rw_up[:, 0, :height, :width]
    # IRN divides by the max; the floor only keeps an all-zero walk from becoming NaN (→ background).
    rw_up = rw_up / rw_up.max().clamp_min(1e-12)
    rw_up = F.pad(rw_up, (0, 0, 0, 0, 1, 0), value=bg_threshold)
    pred = rw_up.argmax(dim=0).cpu().numpy()
    labels = np.concatenate([[0], keys + 1])
    return labels[pred].astype(np.uint8)
