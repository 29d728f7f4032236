"""What a CAM or AdvCAM call returns for one image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Trajectory:
    """The climb, step by step (only with ``record_trajectory=True``).

    Attributes:
        high_res: ``[J, n, H, W]``; entry ``t`` is the normalised ``high_res`` that the maps of
            ``x⁰ … x^t`` give, i.e. exactly what the same call with ``steps=t+1`` returns
            (``steps=t`` with ``accumulate="include_last"``). Other scales follow their own
            step rule (scale 0.5 runs fewer steps), so this holds for every ``t``.
        attribution: ``[J, n, h, w]`` the per-step attribution ``A_t`` (views merged, not
            accumulated, raw values) at scale 1.0 (or the first scale if 1.0 is absent).
        score: ``[J, n]`` the target logit ``y_c`` (spatial mean of ReLU(S), averaged over the two
            views) of ``x^t`` at that scale.
        scale: the scale of ``attribution`` and ``score``.
    """

    high_res: torch.Tensor
    attribution: torch.Tensor
    score: torch.Tensor
    scale: float


@dataclass
class AdvCAMResult:
    """Class maps of one image.

    Attributes:
        keys: ``[n]`` int64, the 0-based indices of the classes that got a map.
        cam: ``[n, ⌈H/4⌉, ⌈W/4⌉]`` float32, each map divided by its max + 1e-5.
        high_res: ``[n, H, W]`` float32, each map divided by its max + 1e-5.
        trajectory: per-step maps (``record_trajectory=True`` only).
        chunk_size: classes climbed per batch in the end (smaller than asked after a CUDA OOM).
    """

    keys: torch.Tensor
    cam: torch.Tensor
    high_res: torch.Tensor
    trajectory: Trajectory | None = None
    chunk_size: int | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """The three arrays of a CAM file: ``keys`` int64, ``cam`` and ``high_res`` float32."""
        return {
            "keys": self.keys.detach().cpu().to(torch.int64).numpy(),
            "cam": self.cam.detach().cpu().float().numpy(),
            "high_res": self.high_res.detach().cpu().float().numpy(),
        }
