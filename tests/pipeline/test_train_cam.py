"""Stage train_cam end to end on the tiny synthetic set: checkpoint written atomically, loadable, done."""

import math

import torch

from advcam_pl.models import CAMClassifier
from advcam_pl.pipeline import run_stage, train_cam

OVERRIDES = ("data=synthetic", "classifier=resnet18", "classifier.train.max_epochs=1", "classifier.train.crop_size=32",
             "classifier.train.resize_long=[32,48]", "logger=none", "trainer=cpu", "+trainer.enable_progress_bar=false")


def test_train_cam_writes_a_loadable_checkpoint_and_is_done(compose_cfg, synthetic_root, tmp_path):
    cfg = compose_cfg(*OVERRIDES, f"data.root={synthetic_root}")
    assert not train_cam.is_done(cfg)

    metrics = train_cam.run(cfg)

    ckpt = tmp_path / "checkpoints" / "cam_classifier.ckpt"
    assert str(ckpt) == cfg.artifacts.cam_ckpt and ckpt.is_file()
    # the checkpoint and its provenance record, no temporary or progress file
    assert sorted(p.name for p in ckpt.parent.iterdir()) == [ckpt.name, f"{ckpt.name}.provenance.json"]
    assert train_cam.is_done(cfg)
    assert 0 < metrics["val_map"] <= 1 and metrics["objective"] == metrics["val_map"]
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"])

    # Plain types only: torch.load's default weights_only=True must read it (a Path would not pass).
    assert "optimizer_states" not in torch.load(ckpt, weights_only=True)
    model = CAMClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    assert model.hparams.depth == 18 and model.hparams.norm == "batch"
    with torch.no_grad():
        assert model.cam(torch.zeros(1, 3, 48, 64)).shape == (1, 20, 3, 4)

    # A second pipeline run skips the finished stage.
    assert run_stage("train_cam", cfg) == {"skipped": True}
