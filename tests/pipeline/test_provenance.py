"""What made a stage's outputs is recorded beside them; other settings or inputs are refused with the
changed keys named, ``overwrite`` recomputes (issue 14 item 3)."""

from pathlib import Path

import pytest
from test_refine_stages import OVERRIDES, fake_cams, mtimes

from advcam_pl.errors import StaleOutputsError
from advcam_pl.pipeline import make_ir_label, run_stage, train_cam
from advcam_pl.pipeline.provenance import Provenance, file_identity, folder_identity

# 12 images, CRF in this process: a make_ir_label run takes about a second.
LABELS = (*OVERRIDES, "data.infer_list=train", "irn.num_workers=0")
TRAIN = ("data=synthetic", "classifier=resnet18", "logger=none", "trainer=cpu")


def labelled(compose_cfg, synthetic_root, *overrides):
    return compose_cfg(*LABELS, f"data.root={synthetic_root}", *overrides)


def test_changed_settings_are_refused_naming_the_keys_and_the_ways_on(compose_cfg, synthetic_root):
    cfg = labelled(compose_cfg, synthetic_root)
    fake_cams(cfg, synthetic_root)
    run_stage("make_ir_label", cfg)
    before = mtimes(cfg.artifacts.ir_label_dir)

    changed = labelled(compose_cfg, synthetic_root, "irn.ir_label.fg_threshold=0.3")
    assert not make_ir_label.is_done(changed)  # no longer "outputs complete, skipped"
    with pytest.raises(StaleOutputsError) as err:
        run_stage("make_ir_label", changed)
    message = str(err.value)
    assert "irn.ir_label.fg_threshold: 0.35 then, 0.3 now" in message
    assert "use a new cam.name" in message and "overwrite=true (or overwrite=[make_ir_label])" in message
    assert mtimes(cfg.artifacts.ir_label_dir) == before  # nothing touched
    assert run_stage("make_ir_label", cfg) == {"skipped": True}  # the original settings still match


def test_overwrite_recomputes_once_per_run(compose_cfg, synthetic_root, monkeypatch):
    cfg = labelled(compose_cfg, synthetic_root)
    ids = fake_cams(cfg, synthetic_root)
    run_stage("make_ir_label", cfg)
    # skip_done=false runs the stage, which still keeps every finished image
    assert run_stage("make_ir_label", labelled(compose_cfg, synthetic_root, "skip_done=false"))["num_written"] == 0

    monkeypatch.setenv("ADVCAM_RUN_ID", "run-1")
    changed = labelled(compose_cfg, synthetic_root, "irn.ir_label.fg_threshold=0.3", "overwrite=[make_ir_label]")
    assert run_stage("make_ir_label", changed)["num_written"] == len(ids)
    assert make_ir_label.is_done(labelled(compose_cfg, synthetic_root, "irn.ir_label.fg_threshold=0.3"))
    assert not make_ir_label.is_done(cfg)

    # The same run continued (after a kill, or a SLURM requeue: same run id) keeps what it recomputed...
    (Path(cfg.artifacts.ir_label_dir) / f"{ids[0]}.png").unlink()
    assert run_stage("make_ir_label", changed)["num_written"] == 1
    # ...a new run with overwrite computes everything again
    monkeypatch.setenv("ADVCAM_RUN_ID", "run-2")
    assert run_stage("make_ir_label", changed)["num_written"] == len(ids)


def test_outputs_of_other_inputs_are_refused(compose_cfg, synthetic_root):
    cfg = labelled(compose_cfg, synthetic_root)
    fake_cams(cfg, synthetic_root)
    run_stage("make_ir_label", cfg)
    # make_cam makes the CAM files again with other settings: its record changes
    Provenance("make_cam", Path(cfg.artifacts.cam_dir), {"cam.steps": 8.0}, {}, "a new cam.name",
               patterns=("*.npz",), policy="replace").begin(cfg)
    assert not make_ir_label.is_done(cfg)
    with pytest.raises(StaleOutputsError, match=r"input cam_dir: changed since \(unrecorded then, record:"):
        run_stage("make_ir_label", cfg)


def test_outputs_without_a_record_are_not_trusted(compose_cfg, synthetic_root):
    cfg = labelled(compose_cfg, synthetic_root)
    fake_cams(cfg, synthetic_root)
    run_stage("make_ir_label", cfg)
    (Path(cfg.artifacts.ir_label_dir) / "provenance.json").unlink()  # e.g. made by an earlier version
    assert not make_ir_label.is_done(cfg)
    with pytest.raises(StaleOutputsError, match="no record of the settings that made them"):
        run_stage("make_ir_label", cfg)
    assert run_stage("make_ir_label", labelled(compose_cfg, synthetic_root, "overwrite=true"))["num_written"] == 12


def test_a_replaced_input_file_is_named(tmp_path, compose_cfg):
    cfg = compose_cfg()
    ckpt = tmp_path / "irn.ckpt"
    ckpt.write_bytes(b"weights 1")

    def record():
        return Provenance("make_sem_seg", tmp_path / "sem_seg", {"irn.random_walk.beta": 10.0},
                          {"irn_ckpt": file_identity(ckpt)}, "a new cam.name", patterns=("*.png",))

    record().begin(cfg)
    assert record().matches() and folder_identity(tmp_path / "sem_seg").startswith("record:")
    ckpt.write_bytes(b"weights 2")  # train_irn ran again
    assert not record().matches()
    with pytest.raises(StaleOutputsError, match=r"input irn_ckpt: changed since \(sha256:"):
        record().begin(cfg)


def test_two_runs_with_different_settings_cannot_share_outputs(tmp_path, compose_cfg):
    cfg = compose_cfg()
    first = Provenance("make_cam", tmp_path / "advcam", {"cam.lam": 7.0}, {}, "a new cam.name", patterns=("*.npz",))
    second = Provenance("make_cam", tmp_path / "advcam", {"cam.lam": 5.0}, {}, "a new cam.name", patterns=("*.npz",))
    first.begin(cfg)  # started, nothing written yet
    with pytest.raises(StaleOutputsError, match="cam.lam: 7.0 then, 5.0 now"):
        second.begin(cfg)
    first.begin(cfg)  # the first one (or a second process with its settings) goes on


def test_train_cam_refuses_a_checkpoint_of_other_settings_before_training(compose_cfg, synthetic_root):
    cfg = compose_cfg(*TRAIN, f"data.root={synthetic_root}")
    train_cam.provenance(cfg).begin(cfg)
    ckpt = Path(cfg.artifacts.cam_ckpt)
    ckpt.write_bytes(b"stands for a finished checkpoint")
    changed = compose_cfg(*TRAIN, f"data.root={synthetic_root}", "classifier.module.lr=0.05")
    assert not train_cam.is_done(changed)
    with pytest.raises(StaleOutputsError, match=r"(?s)cam_classifier\.ckpt was made with other .*classifier\.module\.lr: 0\.01 then, 0\.05 now.*artifacts\.cam_ckpt="):
        train_cam.run(changed)
    assert ckpt.read_bytes() == b"stands for a finished checkpoint"
    # with its own settings the record matches, but the file is no whole checkpoint: not done
    assert train_cam.provenance(cfg).matches() and not train_cam.is_done(cfg)
