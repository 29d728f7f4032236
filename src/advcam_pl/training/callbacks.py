"""The Lightning callbacks of the stages, in one place.

- :class:`MeanShiftCallback` (train_irn): IRN's displacement mean after training;
- :class:`ProgressCheckpoint` (train_seg, train_semi): a full checkpoint every n steps, to resume a killed run;
- :class:`SegmentationWriter` (eval_seg, eval_semi): softmax predictions → palette PNGs, with the dense CRF in
  worker processes (the segmentation counterpart of :class:`advcam_pl.advcam.writer.CAMWriter`).

User-chosen callbacks of the training stages come from the ``callbacks`` config group
(:func:`advcam_pl.pipeline.common.training_callbacks`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from advcam_pl.training.checkpoint import progress_path, save_checkpoint_atomic

log = logging.getLogger(__name__)


class MeanShiftCallback(pl.Callback):
    """At the end of training, ``mean_shift.running_mean`` ← the mean of the per-batch mean raw
    displacements over the inference images (IRN ``train_irn.py``), sharded over ranks.

    Needs a module with ``displacement_sum(loader) -> (sum [2], batches)`` and ``mean_shift.running_mean``
    (:class:`~advcam_pl.models.irn.IRN`), and a datamodule with ``mean_shift_dataloader(rank, world_size)``
    (:class:`~advcam_pl.data.affinity.AffinityDataModule`).
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader = trainer.datamodule.mean_shift_dataloader(trainer.global_rank, trainer.world_size)
        was_training = pl_module.training
        pl_module.eval()
        total, count = pl_module.displacement_sum(loader)
        pl_module.train(was_training)
        stats = torch.cat([total, torch.tensor([float(count)], device=total.device)])
        stats = trainer.strategy.reduce(stats, reduce_op="sum")
        if stats[2] > 0:
            pl_module.mean_shift.running_mean.copy_(stats[:2] / stats[2])
        log.info("mean displacement %s over %d batches", stats[:2].tolist(), int(stats[2]))


class ProgressCheckpoint(pl.Callback):
    """Every ``every_n_steps`` optimiser steps (before the last), a full checkpoint (optimiser and
    schedule included) at ``path``, written atomically; ``trainer.fit(ckpt_path=path)`` resumes
    (:func:`~advcam_pl.training.checkpoint.fit_resumable`). Works for fits bounded by steps or by
    epochs; a resume mid-epoch draws the rest of that epoch's batches afresh."""

    def __init__(self, path: str | os.PathLike, every_n_steps: int):
        self.path, self.every_n_steps, self._last_step = Path(path), int(every_n_steps), -1

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        step = trainer.global_step
        if (step and step != self._last_step and step % self.every_n_steps == 0
                and step < trainer.estimated_stepping_batches):
            self._last_step = step
            save_checkpoint_atomic(trainer, self.path)


def progress_callbacks(ckpt: str | os.PathLike, every_n_steps: int) -> list[pl.Callback]:
    """A training stage's :class:`ProgressCheckpoint` for its final checkpoint ``ckpt`` (at
    :func:`~advcam_pl.training.checkpoint.progress_path`), or none when ``every_n_steps`` is 0."""
    return [ProgressCheckpoint(progress_path(ckpt), every_n_steps)] if every_n_steps else []


class SegmentationWriter(BasePredictionWriter):
    """Each predict batch's softmax ``[1, C, H, W]`` → palette PNGs (argmax, after the CRF when ``crf``).

    ``targets(id) -> {"final": path, "no_crf": path (optional)}`` says where an image's PNGs go (set
    it before each ``trainer.predict``); batches hold ``"id"`` ``[1]`` and ``"image_uint8"``
    ``[H, W, 3]`` (the CRF's colour term). ``crf``: keyword arguments of
    :func:`advcam_pl.refine.crf.crf_inference_prob`, or None. The CRF runs inline, or in
    ``num_workers`` spawned processes while the model goes on with the next images.
    """

    def __init__(self, crf: dict | None = None, num_workers: int = 0):
        super().__init__(write_interval="batch")
        self.crf, self.num_workers = crf, int(num_workers)
        self.targets: Callable[[str], dict[str, Path]] | None = None
        self._pool = None
        self._pending: list = []

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.targets is None:
            raise RuntimeError("SegmentationWriter.targets is not set: where should the PNGs go?")
        if self.num_workers > 0 and self.crf is not None:
            self._pool = multiprocessing.get_context("spawn").Pool(self.num_workers)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        from advcam_pl.refine.crf import write_label_pngs

        job = (batch["image_uint8"], prediction[0].float().cpu().numpy(), self.crf, self.targets(batch["id"][0]))
        if self._pool is None:
            write_label_pngs(*job)
            return
        self._pending.append(self._pool.apply_async(write_label_pngs, job))
        while len(self._pending) > 2 * self.num_workers:
            self._pending.pop(0).get()

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pool is not None:
            for result in self._pending:
                result.get()
            self._pool.close()
            self._pool.join()
            self._pool, self._pending = None, []

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool, self._pending = None, []
