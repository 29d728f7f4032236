"""SIGTERM (SLURM's preemption notice, a job manager's stop) and kill -9 in the middle of a stage: the
process exits within seconds, finished work is kept, the same command goes on (issue 14: SIGTERM,
items 1 and 2). Each test starts Python processes, hence ``slow``."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_refine_stages import OVERRIDES, fake_cams

from advcam_pl.io import file_is_complete
from advcam_pl.pipeline import run_stage, train_cam
from advcam_pl.training.checkpoint import checkpoint_is_complete, load_checkpoint_file, progress_path

RUNNER = Path(__file__).with_name("stage_process.py")
pytestmark = pytest.mark.slow


def start(seconds: float, what: str, overrides) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, str(RUNNER), str(seconds), what, *overrides], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the stage ended before the signal (rc {proc.returncode}):\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the stage to make progress")
        time.sleep(0.1)


def stop(proc: subprocess.Popen, signum: int) -> tuple[int, float, str]:
    """Send ``signum``; returns the exit status, the seconds it took to exit, the output."""
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the stage did not exit within 60 s of the signal") from None
    return proc.returncode, time.monotonic() - sent, out


def test_sigterm_stops_make_ir_label_promptly_and_the_rerun_finishes_identically(compose_cfg, synthetic_root,
                                                                                 tmp_path_factory):
    overrides = (*OVERRIDES, f"data.root={synthetic_root}", "data.infer_list=train", "irn.num_workers=0")
    cfg = compose_cfg(*overrides)
    ids = fake_cams(cfg, synthetic_root)
    out = Path(cfg.artifacts.ir_label_dir)

    proc = start(0.5, "ir_label", [*overrides, f"paths.work_dir={cfg.paths.work_dir}",
                                   f"paths.output_dir={cfg.paths.output_dir}", "stages=[make_ir_label]"])
    wait_for(lambda: len(list(out.glob("*.png"))) >= 2, proc)
    rc, seconds, log = stop(proc, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, log
    assert seconds < 10, f"took {seconds:.1f} s to stop"
    assert "stopped by SIGTERM" in log and "finished outputs are kept" in log
    done = sorted(out.glob("*.png"))
    assert 2 <= len(done) < len(ids) and all(file_is_complete(p) for p in done)
    assert not list(out.glob(".*.tmp"))

    assert run_stage("make_ir_label", cfg)["num_written"] == len(ids) - len(done)
    reference = compose_cfg(*overrides, f"paths.work_dir={tmp_path_factory.mktemp('reference')}",
                            f"artifacts.cam_dir={cfg.artifacts.cam_dir}")
    run_stage("make_ir_label", reference)
    for image_id in ids:
        name = f"{image_id}.png"
        assert (out / name).read_bytes() == (Path(reference.artifacts.ir_label_dir) / name).read_bytes()


def test_sigterm_stops_make_cam_inside_lightning_predict(compose_cfg, synthetic_root, tmp_path):
    """Lightning's predict loop only notes SIGTERM; the stage must stop anyway."""
    import pytorch_lightning as pl
    import torch

    from advcam_pl.models.cam_classifier import CAMClassifier
    from advcam_pl.pipeline import make_cam

    ckpt = tmp_path / "checkpoints" / "cam_classifier.ckpt"
    ckpt.parent.mkdir()
    model = CAMClassifier(depth=18, pretrained=None, norm="batch")
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pl.__version__}, ckpt)
    overrides = ("data=synthetic", f"data.root={synthetic_root}", "data.infer_list=train", "classifier=resnet18",
                 "cam=cam", "cam.scales=[1.0]", "cam.batch_size=1", "trainer=cpu", "logger=none",
                 "+trainer.enable_progress_bar=false")
    cfg = compose_cfg(*overrides)
    cam_dir = Path(cfg.artifacts.cam_dir)
    proc = start(0.5, "cam", [*overrides, f"paths.work_dir={cfg.paths.work_dir}",
                              f"paths.output_dir={cfg.paths.output_dir}", "stages=[make_cam]"])
    wait_for(lambda: len(list(cam_dir.glob("*.npz"))) >= 2, proc)
    rc, seconds, log = stop(proc, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, log
    assert seconds < 10, f"took {seconds:.1f} s to stop"
    done = sorted(cam_dir.glob("*.npz"))
    assert all(file_is_complete(p) for p in done) and not list(cam_dir.glob(".*.tmp"))
    metrics = make_cam.run(cfg)
    assert metrics["written"] == metrics["num_images"] - len(done) and make_cam.is_done(cfg)


def test_train_cam_after_sigterm_and_kill_9_ends_with_the_steps_of_an_uninterrupted_fit(compose_cfg, synthetic_root):
    overrides = ("data=synthetic", f"data.root={synthetic_root}", "classifier=resnet18",
                 "classifier.train.max_epochs=2", "classifier.train.crop_size=32", "classifier.train.resize_long=[32,48]",
                 "classifier.train.save_every_n_steps=1", "logger=none", "trainer=cpu", "callbacks=none",
                 "+trainer.enable_progress_bar=false")
    cfg = compose_cfg(*overrides)
    args = [*overrides, f"paths.work_dir={cfg.paths.work_dir}", f"paths.output_dir={cfg.paths.output_dir}",
            "stages=[train_cam]"]
    progress = progress_path(cfg.artifacts.cam_ckpt)

    def saved_step() -> int:
        return load_checkpoint_file(progress)["global_step"] if checkpoint_is_complete(progress) else -1

    proc = start(0.3, "train_step", args)
    wait_for(lambda: saved_step() >= 2, proc)
    rc, seconds, log = stop(proc, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, log
    assert seconds < 15, f"took {seconds:.1f} s to stop"
    first = saved_step()  # the batch running at the signal finished and was saved
    assert first >= 2 and "stopping after the current training step" in log

    proc = start(0.3, "train_step", args)  # resumes, then dies without any chance to clean up
    wait_for(lambda: saved_step() > first, proc)
    rc, _, log = stop(proc, signal.SIGKILL)
    assert rc == -signal.SIGKILL and f"Restoring states from the checkpoint path at {progress}" in log
    assert checkpoint_is_complete(progress) and saved_step() > first

    metrics = train_cam.run(cfg)
    assert metrics["steps"] == 6 and train_cam.is_done(cfg) and not progress.exists()
