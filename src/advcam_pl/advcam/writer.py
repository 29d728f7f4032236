"""make_cam under Lightning: a predict-step adaptor that climbs, and a writer that saves.

``CAMPredictor`` wraps any classifier with ``features(x)`` and a 1×1 ``classifier``; its
``predict_step`` runs plain CAM or AdvCAM on one ``InferenceDataModule`` batch — one image, or a
list of images of one size whose (image, class) climbs share the network's batches
(:func:`~advcam_pl.advcam.adv_climb_batch`) — on the module's device (with gradients enabled: the
Trainer needs ``inference_mode=False``). ``CAMWriter``, a ``BasePredictionWriter``, saves each
image's maps to ``<cam_dir>/<id>.npz`` atomically. Resume is "skip what exists": the datamodule
leaves finished ids out, the predictor does not climb for an id whose file exists, the writer
never overwrites. Under DDP each process writes the images of its own shard, so every image is
written exactly once.

    predictor = CAMPredictor(classifier, method="advcam", climb=ClimbOptions(steps=27), cam_dir=cam_dir)
    trainer = pl.Trainer(inference_mode=False, callbacks=[CAMWriter(cam_dir), ImagesPerSecondBar()])
    trainer.predict(predictor, datamodule=dm, return_predictions=False)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter, TQDMProgressBar
from torch import nn

from advcam_pl.advcam.cam import DEFAULT_SCALES, compute_cam
from advcam_pl.advcam.cam_io import cam_path, empty_cam, save_cam
from advcam_pl.advcam.climb import ClimbOptions, adv_climb_batch
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


def predictions(output: CAMPrediction | Sequence[CAMPrediction | None] | None) -> list[CAMPrediction]:
    """The images of one ``predict_step`` output (one prediction or a list; ``None`` = skipped)."""
    items = output if isinstance(output, list | tuple) else [output]
    return [p for p in items if p is not None]


def num_skipped(output: CAMPrediction | Sequence[CAMPrediction | None] | None) -> int:
    items = output if isinstance(output, list | tuple) else [output]
    return sum(p is None for p in items)


def unbatch(batch: Mapping[str, Any]) -> dict[str, Any]:
    """An ``InferenceDataModule`` item → ``{"id", "images", "size", "label", "mask"}`` of one image.

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
        climb: :class:`~advcam_pl.advcam.ClimbOptions`, or a mapping of its fields
            (``{"steps": 27, "lam": 7.0}``); ``None``: the official settings.
        cam_dir: where the writer puts ``<id>.npz``; an id whose file exists is not computed
            again (unless ``record_trajectory``: the analysis needs every image's climb).
        record_trajectory: keep the climb's trajectory for :class:`~advcam_pl.advcam.analysis.ClimbAnalysis`.
    """

    def __init__(
        self,
        model: nn.Module,
        method: str = "advcam",
        scales: Sequence[float] = DEFAULT_SCALES,
        climb: ClimbOptions | Mapping[str, Any] | None = None,
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
        self.climb = climb if isinstance(climb, ClimbOptions) else ClimbOptions.build(**dict(climb or {}))
        self.cam_dir = Path(cam_dir) if cam_dir is not None else None
        self.record_trajectory = record_trajectory

    def _done(self, image_id: str) -> bool:
        return self.cam_dir is not None and cam_path(self.cam_dir, image_id).exists()

    def predict_step(
        self, batch: Mapping[str, Any] | Sequence[Mapping[str, Any]], batch_idx: int = 0
    ) -> CAMPrediction | list[CAMPrediction | None] | None:
        """One item → its :class:`CAMPrediction` (``None`` if its file exists); a list of items →
        a list of those, in order."""
        if isinstance(batch, Mapping):
            return self._predict([unbatch(batch)])[0]
        return self._predict([unbatch(item) for item in batch])

    def _predict(self, items: list[dict[str, Any]]) -> list[CAMPrediction | None]:
        start = time.perf_counter()
        out: list[CAMPrediction | None] = [None] * len(items)
        todo = []  # indices of the images with classes to compute
        for n, item in enumerate(items):
            if self._done(item["id"]) and not self.record_trajectory:
                continue  # finished by an earlier (or a parallel) run
            if not (item["label"] > 0).any():
                out[n] = CAMPrediction(item["id"], item["size"], empty_cam(item["size"]), mask=item["mask"])
            else:
                todo.append(n)
        keys = [torch.nonzero(items[n]["label"] > 0)[:, 0] for n in todo]
        if self.method == "cam":
            results = [compute_cam(self.model, items[n]["images"], k, scales=self.scales, size=items[n]["size"])
                       for n, k in zip(todo, keys)]
        elif todo:
            with torch.enable_grad():
                results = adv_climb_batch(self.model, [items[n]["images"] for n in todo], keys, self.climb,
                                          scales=self.scales, sizes=[items[n]["size"] for n in todo],
                                          record_trajectory=self.record_trajectory)
            fitted = results[0].chunk_size
            if fitted is not None and fitted != self.climb.chunk_size:
                self.climb = replace(self.climb, chunk_size=fitted)  # an OOM halved it: keep the size that fits
        else:
            results = []
        seconds = (time.perf_counter() - start) / max(1, len(todo))
        for n, result in zip(todo, results):
            trajectory = result.trajectory
            if trajectory is not None:
                trajectory = Trajectory(trajectory.high_res.cpu(), trajectory.attribution.cpu(),
                                        trajectory.score.cpu(), trajectory.scale)
            item = items[n]
            out[n] = CAMPrediction(item["id"], item["size"], result.arrays(), trajectory, item["mask"], seconds)
        return out

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
        self.skipped += num_skipped(prediction)
        for item in predictions(prediction):
            path = cam_path(self.cam_dir, item.image_id)
            if path.exists():
                self.skipped += 1
                continue
            save_cam(path, **item.arrays)
            self.written += 1
            self.empty += int(item.arrays["keys"].shape[0] == 0)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = time.perf_counter() - self._start
        log.info("rank %d: wrote %d CAM files (%d without classes), skipped %d, %.2f images/s",
                 trainer.global_rank, self.written, self.empty, self.skipped,
                 self.written / seconds if seconds > 0 else 0.0)


class ImagesPerSecondBar(TQDMProgressBar):
    """Lightning's tqdm bar, counting images (one or several per predict batch): ``… 3.2img/s``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._images = 0

    def init_predict_tqdm(self):
        bar = super().init_predict_tqdm()
        bar.unit = "img"
        return bar

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        super().on_predict_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)
        if batch_idx == 0:
            self._images = 0
            loaders = trainer.predict_dataloaders
            loader = loaders[dataloader_idx] if isinstance(loaders, list | tuple) else loaders
            total = _images_in(loader)
            if total is not None and self.predict_progress_bar is not None:
                self.predict_progress_bar.total = total

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._images += len(batch) if isinstance(batch, list) else 1
        if self.predict_progress_bar is not None:
            self.predict_progress_bar.n = self._images
            self.predict_progress_bar.refresh()


def _images_in(loader) -> int | None:
    """Images this process predicts when the loader's batches hold several (``BatchedDataset``);
    ``None`` otherwise (one per batch: Lightning's count is right)."""
    lengths = getattr(getattr(loader, "dataset", None), "batch_lengths", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    batch_sampler = getattr(batch_sampler, "_batch_sampler", batch_sampler)  # Lightning's index wrapper
    if lengths is None or batch_sampler is None:
        return None
    return sum(lengths[i] for indices in batch_sampler for i in indices)
