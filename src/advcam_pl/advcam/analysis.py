"""How the maps change along the climb: the paper's Fig. 2 and Fig. 6 from recorded trajectories.

For every adversarial iteration ``t`` (entry ``t`` of :class:`~advcam_pl.advcam.result.Trajectory`,
i.e. the maps of ``x⁰…x^t`` accumulated):

- **seed mIoU** (Fig. 6a): background plane at each threshold, argmax, 21-class mIoU against the
  GT masks (255 ignored); reported per threshold and at the best one.
- **proportion of noise** (Fig. 6b): at the fixed threshold ``noise_threshold``, the pixels that
  are foreground in the seed of step ``t`` but were background at step 0 ("added"), and among
  them the fraction that is background in the GT: ``Σ|added ∧ GT = 0| / Σ|added|`` over the
  dataset (GT-ignore pixels excluded; undefined at ``t = 0``).
- **pixel amplification ratio** (Fig. 2): per image and class, with the step-``t`` attribution
  ``A_t`` at scale 1.0 (raw, not accumulated), the discriminative region
  ``D = {A_0 / max A_0 > τ}`` and the non-discriminative region ``N`` (the rest), both inside the
  GT object of that class when a mask is given (the whole image otherwise):
  ``r_t(R) = Σ_R A_t / Σ_R A_0``; averaged over (image, class) pairs with ``Σ_R A_0 > 0``.

``ClimbStats`` accumulates (numpy, mergeable); ``ClimbAnalysis`` is the Lightning callback that
feeds it from ``CAMPredictor`` outputs, sums it over DDP processes and writes the JSON.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback

from advcam_pl.advcam.result import Trajectory
from advcam_pl.advcam.writer import predictions
from advcam_pl.evaluation.miou import IGNORE_INDEX, NUM_CLASSES, confusion_matrix, miou_from_confusion
from advcam_pl.io import atomic_save_json

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 11))  # 0.05 … 0.50
REGIONS = ("discriminative", "non_discriminative")


def _ratio(num: np.ndarray, den: np.ndarray) -> list[float | None]:
    return [float(n / d) if d > 0 else None for n, d in zip(num, den)]


class ClimbStats:
    """Sums over images for ``num_maps`` trajectory entries (see the module docstring)."""

    def __init__(self, num_maps: int, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                 noise_threshold: float = 0.25, tau: float = 0.5):
        self.num_maps = int(num_maps)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.noise_threshold = float(noise_threshold)
        self.tau = float(tau)
        self.confusion = np.zeros((self.num_maps, len(self.thresholds), NUM_CLASSES, NUM_CLASSES), np.int64)
        self.added = np.zeros(self.num_maps, np.int64)
        self.added_background = np.zeros(self.num_maps, np.int64)
        self.amplification = np.zeros((self.num_maps, len(REGIONS)), np.float64)
        self.amplification_count = np.zeros(len(REGIONS), np.int64)
        self.num_images = 0
        self.num_with_mask = 0

    # ---- accumulation ------------------------------------------------------------------

    def update(self, trajectory: Trajectory | None, keys: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add one image: its trajectory (``None`` for an image without classes), keys ``[n]``, GT ``[H, W]``."""
        keys = np.asarray(keys, dtype=np.int64)
        if trajectory is None and keys.size:
            raise ValueError("an image with classes needs its trajectory (record_trajectory=True)")
        self.num_images += 1
        if mask is not None:
            self.num_with_mask += 1
            self._update_seeds(trajectory, keys, np.asarray(mask))
        if trajectory is not None:
            self._update_amplification(trajectory, keys, mask)

    def _update_seeds(self, trajectory: Trajectory | None, keys: np.ndarray, gt: np.ndarray) -> None:
        fg0 = None
        valid = gt != IGNORE_INDEX
        for t in range(self.num_maps):
            if trajectory is None:  # no class: every pixel is background at every step
                peak = np.zeros(gt.shape, np.float32)
                label = np.zeros(gt.shape, np.uint8)
            else:
                high_res = trajectory.high_res[t].numpy()  # [n, H, W]
                peak = high_res.max(0)
                label = (keys[high_res.argmax(0)] + 1).astype(np.uint8)
            for i, thr in enumerate(self.thresholds):
                # == seed_labels(high_res, keys, thr): the background plane wins ties
                seed = np.where(peak > thr, label, 0).astype(np.uint8)
                self.confusion[t, i] += confusion_matrix(seed, gt)
            fg = peak > self.noise_threshold
            if t == 0:
                fg0 = fg
            added = fg & ~fg0 & valid
            self.added[t] += int(added.sum())
            self.added_background[t] += int((added & (gt == 0)).sum())

    def _update_amplification(self, trajectory: Trajectory, keys: np.ndarray, mask: np.ndarray | None) -> None:
        attribution = trajectory.attribution.double().numpy()  # [J, n, h, w]
        if attribution.shape[0] != self.num_maps:
            raise ValueError(f"{attribution.shape[0]} attribution steps at scale {trajectory.scale}, "
                             f"expected {self.num_maps}: include scale 1.0 in the climb's scales")
        a0 = attribution[0]
        peak = a0.max(axis=(-2, -1), keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            disc = a0 / peak > self.tau  # [n, h, w]
        if mask is not None:
            gt = torch.from_numpy(np.asarray(mask, dtype=np.int64))[None, None].float()
            gt = F.interpolate(gt, a0.shape[-2:], mode="nearest")[0, 0].numpy().astype(np.int64)
            objects = np.stack([gt == k + 1 for k in keys])
        else:
            objects = np.ones_like(disc)
        for r, region in enumerate((disc & objects, ~disc & objects)):
            for i in range(len(keys)):
                base = a0[i][region[i]].sum()
                if base > 0:
                    self.amplification[:, r] += attribution[:, i][:, region[i]].sum(-1) / base
                    self.amplification_count[r] += 1

    # ---- merging and reading out -------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        return {
            "confusion": self.confusion, "added": self.added, "added_background": self.added_background,
            "amplification": self.amplification, "amplification_count": self.amplification_count,
            "num_images": np.array(self.num_images), "num_with_mask": np.array(self.num_with_mask),
        }

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for name in ("confusion", "added", "added_background", "amplification", "amplification_count"):
            setattr(self, name, np.asarray(state[name]).astype(getattr(self, name).dtype))
        self.num_images = int(state["num_images"])
        self.num_with_mask = int(state["num_with_mask"])

    def summary(self) -> dict:
        """Per-step curves; ``None`` where a quantity is undefined."""
        out: dict = {"num_images": self.num_images, "num_images_with_mask": self.num_with_mask,
                     "steps": list(range(self.num_maps)), "thresholds": list(self.thresholds)}
        if self.num_with_mask:
            miou = np.array([[miou_from_confusion(c) for c in per_t] for per_t in self.confusion])
            best = miou.argmax(1)
            out["seed_miou"] = [float(miou[t, b]) for t, b in enumerate(best)]
            out["best_threshold"] = [self.thresholds[b] for b in best]
            out["seed_miou_per_threshold"] = miou.tolist()
            out["noise_threshold"] = self.noise_threshold
            out["added_pixels"] = self.added.tolist()
            noise = _ratio(self.added_background, self.added)
            noise[0] = None  # nothing is added at t = 0
            out["noise_proportion"] = noise
        out["amplification_tau"] = self.tau
        out["amplification_pairs"] = dict(zip(REGIONS, self.amplification_count.tolist()))
        for r, name in enumerate(REGIONS):
            count = self.amplification_count[r]
            out[f"amplification_{name}"] = (
                (self.amplification[:, r] / count).tolist() if count else [None] * self.num_maps
            )
        return out


class ClimbAnalysis(Callback):
    """Feed :class:`ClimbStats` from ``CAMPredictor`` outputs; on predict end, sum over processes,
    log the curves (one logger step per ``t``) and write them to ``out_path`` (JSON, rank 0).

    Needs ``CAMPredictor(record_trajectory=True)`` and GT masks in the batches for the seed curves.
    """

    def __init__(self, out_path: str | os.PathLike, num_maps: int,
                 thresholds: Sequence[float] = DEFAULT_THRESHOLDS, noise_threshold: float = 0.25,
                 tau: float = 0.5):
        self.out_path = Path(out_path)
        self._args = (num_maps, thresholds, noise_threshold, tau)
        self.stats = ClimbStats(*self._args)
        self.result: dict | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stats = ClimbStats(*self._args)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        for prediction in predictions(outputs):
            self.stats.update(prediction.trajectory, prediction.arrays["keys"], prediction.mask)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = self.stats.state()
        if trainer.world_size > 1:
            reduced = {}
            for name, value in state.items():
                tensor = torch.as_tensor(value, device=pl_module.device)
                reduced[name] = trainer.strategy.reduce(tensor, reduce_op="sum").cpu().numpy()
            self.stats.load_state(reduced)
        self.result = self.stats.summary()
        if trainer.is_global_zero:
            atomic_save_json(self.out_path, self.result)
            log.info("climb analysis of %d images written to %s", self.result["num_images"], self.out_path)
            for t in range(self.stats.num_maps):
                metrics = {f"analysis/{k}": v[t] for k, v in self.result.items()
                           if k in ("seed_miou", "noise_proportion", "amplification_discriminative",
                                    "amplification_non_discriminative") and v[t] is not None}
                for logger in trainer.loggers:
                    logger.log_metrics(metrics, step=t)
