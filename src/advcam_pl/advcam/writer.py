"""make_cam under Lightning: a predict-step adaptor that climbs, and a writer that saves.

``CAMPredictor`` wraps any classifier with ``features(x)`` and a 1×1 ``classifier``; its
``predict_step`` runs plain CAM or AdvCAM on one ``InferenceDataModule`` batch on the module's
device (with gradients enabled: the Trainer needs ``inference_mode=False``). ``CAMWriter``, a
``BasePredictionWriter``, saves each image's maps to ``<cam_dir>/<id>.npz`` atomically.
Resume is "skip what exists": the datamodule leaves finished ids out, the predictor does not climb
for an id whose file exists, the writer never overwrites. Under DDP each process writes the
images of its own shard, so every image is written exactly once.

    predictor = CAMPredictor(classifier, method="advcam", climb={"steps": 27}, cam_dir=cam_dir)
    trainer = pl.Trainer(inference_mode=False, callbacks=[CAMWriter(cam_dir), ImagesPerSecondBar()])
    trainer.predict(predictor, datamodule=dm, return_predictions=False)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter, TQDMProgressBar
from torch import nn

from advcam_pl.advcam.cam import DEFAULT_SCALES, compute_cam
from advcam_pl.advcam.cam_io import cam_path, empty_cam, save_cam
from advcam_pl.advcam.climb import adv_climb
from advcam_pl.advcam.result import Trajectory

log = logging.getLogger(__name__)

METHODS = ("cam", "advcam")


@dataclass
class CAMPrediction:
    """What ``CAMPredictor.predict_step`` returns for one image.

    ``arrays``: ``keys [n]`` int64, ``cam [n, ⌈H/4⌉, ⌈W/4⌉]``, ``high_res [n, H, W]`` float32
    (numpy). ``trajectory`` on CPU when recorded; ``mask`` the GT ``[H, W]`` uint8 when the batch
    has one.
    """

    image_id: str
    size: tuple[int, int]
    arrays: dict[str, np.ndarray]
    trajectory: Trajectory | None = None
    mask: np.ndarray | None = None
    seconds: float = 0.0


def _single(value: Any) -> Any:
    """Unwrap a batch-of-one container (a list, tuple or leading tensor dim of 1)."""
    if isinstance(value, list | tuple) and len(value) == 1:
        return value[0]
    return value


def unbatch(batch: Mapping[str, Any]) -> dict[str, Any]:
    """An ``InferenceDataModule`` batch → ``{"id", "images", "size", "label", "mask"}`` of one image.

    Accepts the contract's batch of one with lists kept (``id`` a str, ``images`` a list of
    ``[3, h, w]``) and the default-collated form (``id`` ``[str]``, images ``[1, 3, h, w]``).
    """
    image_id = _single(batch["id"])
    images = [img[0] if img.dim() == 4 else img for img in batch["images"]]
    label = batch["label"]
    label = label[0] if label.dim() == 2 else label
    size = batch.get("size")
    if size is None:
        size = tuple(images[0].shape[-2:])
    elif isinstance(size, torch.Tensor):
        size = tuple(int(v) for v in size.reshape(-1).tolist())
    else:
        size = tuple(int(_single(v)) for v in size)
    mask = batch.get("mask")
    if mask is not None:
        mask = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        mask = mask.reshape(mask.shape[-2:]).astype(np.uint8)
    return {"id": str(image_id), "images": images, "size": size, "label": label, "mask": mask}


class CAMPredictor(pl.LightningModule):
    """Plain CAM or AdvCAM of every image a predict dataloader yields.

    Args:
        model: the classifier (``features(x)`` and a 1×1 ``classifier``); a submodule, so
            Lightning moves it to the device.
        method: ``"cam"`` or ``"advcam"``.
        scales: the scales of the batch's ``images`` list.
        climb: keywords of :func:`~advcam_pl.advcam.adv_climb` (``steps``, ``lam``, ``impl``, ...).
        cam_dir: where the writer puts ``<id>.npz``; an id whose file exists is not computed
            again (unless ``record_trajectory``: the analysis needs every image's climb).
        record_trajectory: keep the climb's trajectory for :class:`~advcam_pl.advcam.analysis.ClimbAnalysis`.
    """

    def __init__(
        self,
        model: nn.Module,
        method: str = "advcam",
        scales: Sequence[float] = DEFAULT_SCALES,
        climb: Mapping[str, Any] | None = None,
        cam_dir: str | os.PathLike | None = None,
        record_trajectory: bool = False,
    ):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if record_trajectory and method != "advcam":
            raise ValueError("record_trajectory needs method='advcam'")
        self.model = model
        self.method = method
        self.scales = tuple(float(s) for s in scales)
        self.climb = dict(climb or {})
        self.cam_dir = Path(cam_dir) if cam_dir is not None else None
        self.record_trajectory = record_trajectory

    def _done(self, image_id: str) -> bool:
        return self.cam_dir is not None and cam_path(self.cam_dir, image_id).exists()

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int = 0) -> CAMPrediction | None:
        item = unbatch(batch)
        if self._done(item["id"]) and not self.record_trajectory:
            return None  # finished by an earlier (or a parallel) run
        start = time.perf_counter()
        keys = torch.nonzero(item["label"] > 0)[:, 0]
        if keys.numel() == 0:
            return CAMPrediction(item["id"], item["size"], empty_cam(item["size"]), mask=item["mask"])
        if self.method == "cam":
            result = compute_cam(self.model, item["images"], keys, scales=self.scales, size=item["size"])
        else:
            with torch.enable_grad():
                result = adv_climb(self.model, item["images"], keys, scales=self.scales, size=item["size"],
                                   record_trajectory=self.record_trajectory, **self.climb)
            if result.chunk_size is not None and self.climb.get("chunk_size") != result.chunk_size:
                self.climb["chunk_size"] = result.chunk_size  # an OOM halved it: keep the size that fits
        trajectory = result.trajectory
        if trajectory is not None:
            trajectory = Trajectory(trajectory.high_res.cpu(), trajectory.attribution.cpu(),
                                    trajectory.score.cpu(), trajectory.scale)
        return CAMPrediction(item["id"], item["size"], result.arrays(), trajectory, item["mask"],
                             time.perf_counter() - start)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class CAMWriter(BasePredictionWriter):
    """Write each :class:`CAMPrediction` to ``<cam_dir>/<id>.npz`` (atomic; never overwrites).

    Counts ``written``, ``skipped`` (file already there) and ``empty`` (no present class, an
    ``n = 0`` file) per process, and logs images/s at the end.
    """

    def __init__(self, cam_dir: str | os.PathLike):
        super().__init__(write_interval="batch")
        self.cam_dir = Path(cam_dir)
        self.written = self.skipped = self.empty = 0
        self._start = time.perf_counter()

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.cam_dir.mkdir(parents=True, exist_ok=True)
        self.written = self.skipped = self.empty = 0
        self._start = time.perf_counter()

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        if prediction is None:
            self.skipped += 1
            return
        path = cam_path(self.cam_dir, prediction.image_id)
        if path.exists():
            self.skipped += 1
            return
        save_cam(path, **prediction.arrays)
        self.written += 1
        self.empty += int(prediction.arrays["keys"].shape[0] == 0)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = time.perf_counter() - self._start
        log.info("rank %d: wrote %d CAM files (%d without classes), skipped %d, %.2f images/s",
                 trainer.global_rank, self.written, self.empty, self.skipped,
                 self.written / seconds if seconds > 0 else 0.0)


class ImagesPerSecondBar(TQDMProgressBar):
    """Lightning's tqdm bar, counting images (one per predict batch): ``… 3.2img/s``."""

    def init_predict_tqdm(self):
        bar = super().init_predict_tqdm()
        bar.unit = "img"
        return bar
