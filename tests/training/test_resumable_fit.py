"""A training stage killed mid-fit resumes from its progress checkpoint and ends with the same number
of optimiser steps as an uninterrupted fit; a NaN loss stops the fit naming the step (issue 14
items 2 and 7)."""

import pytest
import pytorch_lightning as pl
import torch

from advcam_pl.errors import NonFiniteError
from advcam_pl.pipeline import train_cam
from advcam_pl.training.callbacks import FiniteLossGuard
from advcam_pl.training.checkpoint import hpc_dir, load_checkpoint_file, progress_path, resume_checkpoint

OVERRIDES = ("data=synthetic", "classifier=resnet18", "classifier.train.max_epochs=2", "classifier.train.crop_size=32",
             "classifier.train.resize_long=[32,48]", "logger=none", "trainer=cpu", "+trainer.enable_progress_bar=false",
             "callbacks=none")


class Killed(Exception):
    pass


class Kill(pl.Callback):
    """Stops the process's fit at ``step`` the way a kill does: nothing after it runs (the
    progress checkpoint of that step, written before this callback, is what survives)."""

    def __init__(self, step: int):
        self.step, self.batches_per_epoch = step, None

    def on_train_batch_end(self, trainer, *args):
        self.batches_per_epoch = trainer.num_training_batches
        if trainer.global_step == self.step:
            raise Killed(f"killed at step {self.step}")


class CountSteps(pl.Callback):
    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, *args):
        self.steps.append(trainer.global_step)


@pytest.mark.parametrize("every_n_steps,kills,resume_step", [
    (1, [4], 4),  # the second batch of the second epoch: resumes mid-epoch
    (0, [4], 3),  # epoch checkpoints only: resumes at the epoch's end
    # killed at the end of the first epoch's last batch, then again mid-way: Lightning would count
    # an epoch too many had the last batch been saved before the epoch's end
    (1, [3, 5], 5),
], ids=["mid-epoch", "epoch-end", "twice-across-an-epoch-end"])
def test_killed_fit_resumes_with_the_same_number_of_steps(compose_cfg, synthetic_root, monkeypatch,
                                                          every_n_steps, kills, resume_step):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}", f"classifier.train.save_every_n_steps={every_n_steps}")
    progress = progress_path(cfg.artifacts.cam_ckpt)
    for step in kills:
        kill = Kill(step)
        monkeypatch.setattr(train_cam, "training_callbacks", lambda cfg, loggers, kill=kill: [kill])
        with pytest.raises(Killed, match=f"killed at step {step}"):
            train_cam.run(cfg)
        assert progress.is_file() and not train_cam.is_done(cfg)
    assert load_checkpoint_file(progress)["global_step"] == resume_step  # every n steps, or the epoch's end

    count = CountSteps()
    monkeypatch.setattr(train_cam, "training_callbacks", lambda cfg, loggers: [count])
    metrics = train_cam.run(cfg)
    total = 2 * kill.batches_per_epoch
    assert metrics["steps"] == total == 6 and count.steps == list(range(resume_step + 1, total + 1))
    assert train_cam.is_done(cfg) and not progress.exists()
    final = load_checkpoint_file(cfg.artifacts.cam_ckpt)
    assert final["global_step"] == total and "optimizer_states" not in final


class Diverging(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        return loss * float("nan") if self.global_step == 2 else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_nan_loss_stops_the_fit_naming_the_step():
    data = torch.utils.data.TensorDataset(torch.randn(8, 2))
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[FiniteLossGuard("train_cam")])
    with pytest.raises(NonFiniteError, match=r"train_cam: the training loss is nan at optimiser step 3 "
                                             r"\(epoch 0, batch 2\)"):
        trainer.fit(Diverging(), torch.utils.data.DataLoader(data, batch_size=2))


def test_the_restart_resumes_from_the_newest_complete_checkpoint(tmp_path):
    """After a SLURM requeue Lightning's requeue checkpoint (hpc_ckpt_<n>.ckpt, saved at the signal)
    may be newer than the progress checkpoint; a truncated one never counts."""
    final = tmp_path / "irn.ckpt"
    assert resume_checkpoint(final) is None
    torch.save({"global_step": 40}, progress_path(final))
    assert resume_checkpoint(final) == progress_path(final)
    hpc_dir(final).mkdir()
    torch.save({"global_step": 57}, hpc_dir(final) / "hpc_ckpt_1.ckpt")
    (hpc_dir(final) / "hpc_ckpt_2.ckpt").write_bytes(b"PK\x03\x04 cut short")
    assert resume_checkpoint(final) == hpc_dir(final) / "hpc_ckpt_1.ckpt"
