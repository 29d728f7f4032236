"""Training plumbing: the atomic checkpoint and its barrier, the progress checkpoint, cfg.callbacks."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import CSVLogger

from advcam_pl.config import compose_config
from advcam_pl.io import temp_prefix, temp_target
from advcam_pl.pipeline.common import training_callbacks
from advcam_pl.training.callbacks import ProgressCheckpoint, SegmentationWriter
from advcam_pl.training.checkpoint import save_checkpoint_atomic


class FakeTrainer:
    """Records what save_checkpoint_atomic does, in order; ``rank`` 0 writes and renames."""

    def __init__(self, rank: int = 0, global_step: int = 0, max_steps: int = -1, steps_of_fit: int = -1):
        self.is_global_zero, self.global_step, self.max_steps = rank == 0, global_step, max_steps
        self.estimated_stepping_batches = steps_of_fit if max_steps < 0 else max_steps
        # mid-epoch: ProgressCheckpoint saves the last batch of an epoch at the epoch's end instead
        self.fit_loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=SimpleNamespace(is_last_batch=False)))
        self.events: list = []
        self.strategy = self

    def save_checkpoint(self, path, weights_only=False):
        self.events.append(("save", Path(path).name, weights_only))
        if self.is_global_zero:
            Path(path).write_text("checkpoint")

    def barrier(self, name=None):
        self.events.append(("barrier", sorted(p.name for p in self.folder.iterdir())))


def test_checkpoint_is_renamed_before_every_rank_passes_the_barrier(tmp_path):
    path = tmp_path / "ckpt" / "irn.ckpt"
    trainer = FakeTrainer(rank=0)
    trainer.folder = path.parent
    assert save_checkpoint_atomic(trainer, path, weights_only=True) == path
    (save, tmp_name, weights_only), barrier = trainer.events
    # this process's temporary name for irn.ckpt (a kill -9 leaves it for the next run to remove)
    assert (save, weights_only) == ("save", True) and tmp_name.startswith(temp_prefix(path))
    assert temp_target(tmp_name) == "irn.ckpt" and barrier == ("barrier", ["irn.ckpt"])
    assert path.read_text() == "checkpoint"

    other = FakeTrainer(rank=1)  # another rank: no write, no rename, but it waits at the barrier too
    other.folder = path.parent
    save_checkpoint_atomic(other, path)
    (save, tmp_name, weights_only), barrier = other.events
    assert (save, weights_only) == ("save", False) and temp_target(tmp_name) == "irn.ckpt"
    assert barrier == ("barrier", ["irn.ckpt"])


@pytest.mark.parametrize("bound", [{"max_steps": 6}, {"steps_of_fit": 6}], ids=["max_steps", "max_epochs"])
def test_progress_checkpoint_every_n_steps_but_not_at_the_end(tmp_path, bound):
    callback = ProgressCheckpoint(tmp_path / "seg.progress.ckpt", every_n_steps=2)
    saved = []
    for step in [1, 2, 2, 3, 4, 6]:
        trainer = FakeTrainer(global_step=step, **bound)
        trainer.folder = tmp_path
        callback.on_train_batch_end(trainer)
        saved += [step] if trainer.events else []
    assert saved == [2, 4]  # step 2 once (accumulation repeats it), step 6 is the end of training
    assert (tmp_path / "seg.progress.ckpt").is_file()


def compose_callbacks(*overrides):
    return compose_config(list(overrides))


def test_training_callbacks_come_from_the_config(tmp_path):
    cfg = compose_callbacks()
    assert training_callbacks(cfg, loggers=[]) == []  # a LearningRateMonitor needs a logger
    (monitor,) = training_callbacks(cfg, loggers=[CSVLogger(tmp_path)])
    assert isinstance(monitor, LearningRateMonitor) and monitor.logging_interval == "step"
    cfg = compose_callbacks("callbacks=none",
                            "+callbacks.summary={_target_: pytorch_lightning.callbacks.ModelSummary, max_depth: 2}")
    (summary,) = training_callbacks(cfg, loggers=[])
    assert type(summary).__name__ == "ModelSummary"


def test_segmentation_writer_needs_its_targets():
    writer = SegmentationWriter(crf=None)
    with pytest.raises(RuntimeError, match="targets is not set"):
        writer.on_predict_start(None, None)
