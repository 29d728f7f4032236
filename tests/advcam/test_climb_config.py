"""conf/cam: `cam.climb` instantiates ClimbOptions with its own defaults; stale flat keys are named."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from advcam_pl.advcam import ClimbOptions
from advcam_pl.pipeline.make_cam import climb_options


def cam_cfg(repo_root, *overrides):
    with initialize_config_dir(config_dir=str(repo_root / "conf"), version_base="1.3"):
        return compose("config", overrides=["logger=none", *overrides]).cam


def test_advcam_config_is_the_options_defaults(repo_root):
    assert climb_options(cam_cfg(repo_root)) == ClimbOptions()
    assert cam_cfg(repo_root).batch_size > 1  # the batched climb is make_cam's default


def test_ablation_and_overrides_reach_the_options(repo_root):
    assert climb_options(cam_cfg(repo_root, "cam=advcam_noreg")) == ClimbOptions(lam=0.0)
    opts = climb_options(cam_cfg(repo_root, "cam.climb.steps=8", "cam.climb.autocast_dtype=bf16",
                                 "cam.climb.suppress_others=present"))
    assert (opts.steps, opts.autocast_dtype, opts.suppress_others) == (8, "bf16", "present")
    assert climb_options(cam_cfg(repo_root, "cam=cam")) is None


def test_a_flat_knob_outside_climb_is_named(repo_root):
    cam = cam_cfg(repo_root)
    with open_dict(cam):
        cam.steps = 8  # e.g. an experiment file written before the knobs moved under cam.climb
    with pytest.raises(ValueError, match=r"'steps'.*cam\.climb\.steps"):
        climb_options(cam)


def test_an_unknown_climb_field_is_named(repo_root):
    with pytest.raises(Exception, match="lamda"):
        climb_options(cam_cfg(repo_root, "+cam.climb.lamda=3"))
