"""The Lightning callbacks of the stages, in one place.

- :class:`MeanShiftCallback` (train_irn): IRN's displacement mean after training;
- :class:`ProgressCheckpoint` (every training stage): a full checkpoint every epoch and every n steps, to
  resume a killed or preempted fit; it also saves and stops after the current batch on SIGTERM/SIGINT;
- :class:`FiniteLossGuard` (every training stage): a NaN or infinite loss stops the fit, naming the step;
- :class:`SegmentationWriter` (eval_seg): softmax predictions → palette PNGs, with the dense CRF in
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

from advcam_pl import signals
from advcam_pl.errors import NonFiniteError
from advcam_pl.training.checkpoint import save_checkpoint_atomic

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


def _training_ends_at(trainer: pl.Trainer, step: int) -> bool:
    """Whether ``step`` is the fit's last optimiser step (bounded by steps or by epochs)."""
    return step >= trainer.estimated_stepping_batches


def _last_batch_of_epoch(trainer: pl.Trainer) -> bool:
    return bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)


class ProgressCheckpoint(pl.Callback):
    """A full checkpoint (model, optimiser, schedule, loop state) at ``path``, written atomically:
    every ``every_n_steps`` optimiser steps (0: never) and at the end of every epoch, but not when
    the fit is about to end (the stage writes its final checkpoint then). ``trainer.fit(ckpt_path=path)``
    resumes and ends with the same number of optimiser steps as an uninterrupted fit.

    The last batch of an epoch is saved at the epoch's end, never right after the batch: Lightning
    (2.6) restores a checkpoint taken between the two, but the epoch count of a fit resumed from it
    lags by one, so a second interruption would add an epoch.

    While the fit runs, SIGTERM/SIGINT are deferred (:mod:`advcam_pl.signals`): the current batch
    finishes (on the last batch, the epoch), the checkpoint is saved, then
    :class:`~advcam_pl.signals.Interrupted` stops the fit.
    """

    def __init__(self, path: str | os.PathLike, every_n_steps: int = 0, every_epoch: bool = True):
        self.path, self.every_n_steps, self.every_epoch = Path(path), int(every_n_steps), bool(every_epoch)
        self._last_step = -1

    def _save(self, trainer: pl.Trainer) -> None:
        self._last_step = trainer.global_step
        save_checkpoint_atomic(trainer, self.path)

    def _stop_if_signalled(self, trainer: pl.Trainer) -> None:
        if signals.pending() is None:
            return
        if trainer.global_step != self._last_step:
            self._save(trainer)
        log.warning("fit stopped at step %d by a signal; %s resumes it", trainer.global_step, self.path)
        signals.raise_if_pending()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        signals.defer()

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if _last_batch_of_epoch(trainer):
            return  # saved (and stopped, after a signal) at the epoch's end
        self._stop_if_signalled(trainer)
        step = trainer.global_step
        if (self.every_n_steps and step and step != self._last_step and step % self.every_n_steps == 0
                and not _training_ends_at(trainer, step)):
            self._save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_if_signalled(trainer)
        if (self.every_epoch and trainer.global_step != self._last_step
                and not _training_ends_at(trainer, trainer.global_step)):
            self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        signals.undefer()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        signals.undefer()


class FiniteLossGuard(pl.Callback):
    """Stop the fit with :class:`~advcam_pl.errors.NonFiniteError` when a training step's loss is NaN
    or infinite, naming the stage, optimiser step, epoch and batch (a diverged fit would otherwise
    end "successfully" and poison every later stage)."""

    def __init__(self, stage: str = "fit"):
        self.stage = stage

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not torch.isfinite(loss.detach()).all():
            raise NonFiniteError(
                f"{self.stage}: the training loss is {loss.detach().float().mean().item()} at optimiser step "
                f"{trainer.global_step} (epoch {trainer.current_epoch}, batch {batch_idx}): the fit diverged; "
                "lower the learning rate or check the inputs of that batch"
            )


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
