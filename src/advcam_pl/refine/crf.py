"""Dense CRF (Krähenbühl & Koltun) on pydensecrf, as IRN's ``imutils.crf_inference_label`` uses it.

Two unaries: hard labels with confidence ``gt_prob`` (IR labels, seed + CRF) and probabilities
(refining a soft map). Pairwise terms: a Gaussian (``sxy`` 3, ``compat`` 3) and a bilateral
(``sxy`` 50, ``srgb`` 5, ``compat`` 10) kernel, 10 mean-field iterations.

Everything here takes arrays (and output paths); reading images, masks and CAM files is the
stages' job. :func:`parallel_map` runs a per-image function over many images in worker processes;
the CRF is single-threaded C++, so processes are how it scales. Workers are *spawned* (not forked),
so a parent that already runs torch threads cannot deadlock them; a job must be a picklable
module-level function (or a ``functools.partial`` of one) of this light module, so a worker
imports numpy and pydensecrf, not torch.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

NUM_CLASSES = 21

#: IRN's CRF settings (DESIGN §3); the keyword arguments of every function here.
CRF_DEFAULTS: dict[str, float] = {
    "t": 10,
    "gt_prob": 0.7,
    "gaussian_sxy": 3,
    "gaussian_compat": 3,
    "bilateral_sxy": 50,
    "bilateral_srgb": 5,
    "bilateral_compat": 10,
}


def require_densecrf():
    """``pydensecrf.densecrf`` (and its ``utils``), or an ImportError that says how to install it."""
    try:
        import pydensecrf.densecrf as dcrf
        import pydensecrf.utils  # noqa: F401  (the unary helpers)
    except ImportError as err:
        raise ImportError(
            "the dense CRF needs pydensecrf: `pip install pydensecrf2` (prebuilt wheels of "
            "lucasb-eyer/pydensecrf)"
        ) from err
    return dcrf


def _crf(img: np.ndarray, unary: np.ndarray, n_labels: int, t: int, gaussian_sxy: float, gaussian_compat: float,
         bilateral_sxy: float, bilateral_srgb: float, bilateral_compat: float) -> np.ndarray:
    """Mean-field inference; returns the marginals ``[n_labels, H, W]`` float32."""
    dcrf = require_densecrf()
    height, width = img.shape[:2]
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 [H, W, 3] image, got {img.dtype} {img.shape}")
    d = dcrf.DenseCRF2D(width, height, n_labels)
    d.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    d.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    d.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=np.ascontiguousarray(img),
                           compat=bilateral_compat)
    q = d.inference(int(t))
    return np.asarray(q, dtype=np.float32).reshape(n_labels, height, width)


def crf_inference_label(
    img: np.ndarray,
    labels: np.ndarray,
    n_labels: int,
    t: int = 10,
    gt_prob: float = 0.7,
    gaussian_sxy: float = 3,
    gaussian_compat: float = 3,
    bilateral_sxy: float = 50,
    bilateral_srgb: float = 5,
    bilateral_compat: float = 10,
) -> np.ndarray:
    """Refine a hard label map (IRN ``crf_inference_label``).

    Args:
        img: RGB uint8 ``[H, W, 3]``.
        labels: ``[H, W]`` integers in ``[0, n_labels)`` (indices, e.g. into the keys of an image,
            not VOC classes); each pixel's label gets probability ``gt_prob``, the others share the rest.
    Returns:
        ``[H, W]`` int64 labels in ``[0, n_labels)``.
    """
    labels = np.asarray(labels)
    if labels.shape != img.shape[:2]:
        raise ValueError(f"labels {labels.shape} do not match the image {img.shape[:2]}")
    if n_labels < 2:  # nothing to decide (and pydensecrf's unary would divide by n_labels - 1 = 0)
        return np.zeros(labels.shape, dtype=np.int64)
    require_densecrf()
    from pydensecrf.utils import unary_from_labels

    unary = unary_from_labels(labels.astype(np.int64), n_labels, gt_prob=gt_prob, zero_unsure=False)
    q = _crf(img, unary, n_labels, t, gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb,
             bilateral_compat)
    return q.argmax(axis=0)


def crf_inference_prob(
    img: np.ndarray,
    probs: np.ndarray,
    t: int = 10,
    gaussian_sxy: float = 3,
    gaussian_compat: float = 3,
    bilateral_sxy: float = 50,
    bilateral_srgb: float = 5,
    bilateral_compat: float = 10,
    scale: float | None = None,
    clip: float = 1e-5,
    gt_prob: float | None = None,
) -> np.ndarray:
    """Refine class probabilities ``[C, H, W]`` (unary ``−log p``); returns probabilities ``[C, H, W]``
    (each pixel sums to 1). ``gt_prob`` is accepted and ignored, so ``**CRF_DEFAULTS`` fits both."""
    del gt_prob
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3 or probs.shape[1:] != img.shape[:2]:
        raise ValueError(f"probabilities {probs.shape} do not match the image {img.shape[:2]}")
    require_densecrf()
    from pydensecrf.utils import unary_from_softmax

    unary = unary_from_softmax(probs, scale=scale, clip=clip)
    return _crf(img, unary, probs.shape[0], t, gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb,
                bilateral_compat)


def keyed_argmax(high_res: np.ndarray, threshold: float) -> np.ndarray:
    """``[n, H, W]`` class maps → ``[H, W]`` index into ``[background, keys...]`` with a constant
    background plane ``threshold`` (IRN: ``np.pad(cams, ((1, 0), ...), constant=thr).argmax(0)``)."""
    planes = np.concatenate([np.full((1, *high_res.shape[1:]), threshold, dtype=high_res.dtype), high_res])
    return planes.argmax(axis=0)


def crf_seed_labels(img: np.ndarray, high_res: np.ndarray, keys: np.ndarray, threshold: float,
                    **crf: Any) -> np.ndarray:
    """Seed + CRF: background plane at ``threshold``, argmax, CRF on the labels, VOC labels ``[H, W]`` uint8.

    The official AdvCAM code evaluates seeds without CRF; the "+CRF" row of the paper matches its
    ``cam_to_ir_label`` step, which refines exactly this argmax with :func:`crf_inference_label`
    (``n_labels = len(keys) + 1``). That is what this computes (and what the IR labels use).
    """
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    if high_res.shape[0] != len(keys):
        raise ValueError(f"high_res {high_res.shape} does not match {len(keys)} keys")
    index = keyed_argmax(high_res, threshold)
    refined = crf_inference_label(img, index, n_labels=len(keys) + 1, **{**CRF_DEFAULTS, **crf})
    return np.concatenate([[0], keys + 1])[refined].astype(np.uint8)


def write_label_pngs(image: np.ndarray, probs: np.ndarray, crf: Mapping[str, Any] | None,
                     targets: Mapping[str, str | os.PathLike]) -> None:
    """Class probabilities ``[C, H, W]`` of an RGB uint8 ``image`` ``[H, W, 3]`` → palette PNGs
    (atomic): ``targets["no_crf"]`` (argmax, optional) and ``targets["final"]`` (argmax after
    :func:`crf_inference_prob` with keywords ``crf``, or the plain argmax when ``crf`` is None)."""
    from advcam_pl.io import atomic_save_palette_png

    if "no_crf" in targets:
        atomic_save_palette_png(targets["no_crf"], probs.argmax(0).astype(np.uint8))
    if crf is not None:
        probs = crf_inference_prob(image, probs, **crf)
    atomic_save_palette_png(targets["final"], probs.argmax(0).astype(np.uint8))


# -- many images in worker processes -------------------------------------------------------------


def parallel_map(fn: Callable[..., Any], items: Iterable[Any], num_workers: int = 0,
                 desc: str | None = None, total: int | None = None, unpack: bool = False) -> Iterator[Any]:
    """``fn(item)`` (``fn(*item)`` when ``unpack``) for every item, in order, with a tqdm bar.

    ``num_workers <= 0`` runs in this process; otherwise in that many spawned processes, so
    ``fn`` must be picklable, and a calling *script* needs the ``if __name__ == "__main__":`` guard
    (spawned workers import the main module; ``python -m advcam_pl`` has it). ``items`` is consumed
    lazily, at most ``2 · num_workers`` ahead of the results, so a generator that reads each
    image's arrays keeps memory bounded. Results are yielded in order (consume the iterator).
    """
    from tqdm.auto import tqdm

    if total is None and isinstance(items, Sequence):
        total = len(items)
    bar = tqdm(total=total, desc=desc, disable=desc is None)
    try:
        if num_workers <= 0 or (total is not None and total <= 1):
            for item in items:
                yield fn(*item) if unpack else fn(item)
                bar.update()
            return
        context = multiprocessing.get_context("spawn")
        workers = num_workers if total is None else min(num_workers, total)
        with context.Pool(workers) as pool:
            pending: deque = deque()
            for item in items:
                pending.append(pool.apply_async(fn, tuple(item) if unpack else (item,)))
                if len(pending) > 2 * workers:
                    yield pending.popleft().get()
                    bar.update()
            while pending:
                yield pending.popleft().get()
                bar.update()
    finally:
        bar.close()


def _seed_crf_confusion_job(img: np.ndarray, high_res: np.ndarray, keys: np.ndarray, gt: np.ndarray, *,
                            thresholds: Sequence[float], crf: dict) -> np.ndarray:
    from advcam_pl.evaluation import confusion_matrix

    return np.stack([confusion_matrix(crf_seed_labels(img, high_res, keys, t, **crf), gt) for t in thresholds])


def crf_seed_confusion(
    items: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    thresholds: float | Sequence[float],
    num_workers: int = 0,
    desc: str | None = "seed + CRF",
    total: int | None = None,
    **crf: Any,
) -> np.ndarray:
    """Confusion matrix of the CRF-refined seeds over many images, in ``num_workers`` processes.

    Args:
        items: ``(img uint8 [H, W, 3], high_res [n, H, W], keys [n], gt [H, W])`` per image; a
            generator is read lazily (see :func:`parallel_map`; ``total`` sizes the progress bar).
        thresholds: one background threshold → ``[21, 21]``; a sequence → ``[T, 21, 21]``.
        crf: overrides of :data:`CRF_DEFAULTS` (e.g. ``**cfg.irn.crf``).
    """
    single = np.isscalar(thresholds)
    ts = [float(thresholds)] if single else [float(t) for t in thresholds]
    total_conf = np.zeros((len(ts), NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    job = partial(_seed_crf_confusion_job, thresholds=ts, crf=dict(crf))
    for conf in parallel_map(job, items, num_workers=num_workers, desc=desc, total=total, unpack=True):
        total_conf += conf
    return total_conf[0] if single else total_conf
