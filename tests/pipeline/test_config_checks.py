"""Config values are checked when the config is composed, before any stage loads data or a model
(issue 14 items 8 and 9): bad values name their key, a GPU accelerator without a GPU and a missing
dense CRF fail up front."""

import sys

import pytest
import torch

import advcam_pl.pipeline as pipeline
from advcam_pl.config_checks import check_config, config_errors
from advcam_pl.errors import ConfigError

BAD_VALUES = {
    "cam.climb.lam=abc": "cam.climb.lam must be a number >= 0, got 'abc' (str)",
    "cam.climb.steps=2.5": "cam.climb.steps must be an integer >= 1, got 2.5",
    "cam.climb.tau=1.5": "cam.climb.tau must be a number >= 0 and <= 1, got 1.5",
    "cam.scales=[]": "cam.scales must be a non-empty list of numbers > 0, got []",
    "cam.climb.attribution=gradcam++": "cam.climb.attribution must be one of 'gradcam', 'cam', got 'gradcam++'",
    "irn.ir_label.fg_threshold=high": "irn.ir_label.fg_threshold must be a number >= 0 and <= 1 or 'auto', got 'high'",
    "irn.module.radius=1": "irn.module.radius must be an integer >= 2 or 'auto', got 1",
    "model.train.max_steps=0": "model.train.max_steps must be an integer >= 1, got 0",
    "data.skip_bad=maybe": "data.skip_bad must be one of True, False, got 'maybe'",
    "overwrite=[make_cams]": "overwrite must be true, false, a stage name or a list of stage names",
    "num_threads=all": "num_threads must be an integer >= 1, 'cores' or null, got 'all'",
}


def test_every_bad_value_is_named_with_its_key_and_what_is_expected(compose_cfg):
    errors = config_errors(compose_cfg("data.root=/voc", *BAD_VALUES))
    for override, named in BAD_VALUES.items():
        assert any(named in e for e in errors), (override, errors)
    assert len(errors) == len(BAD_VALUES)  # one line each, nothing else flagged
    assert config_errors(compose_cfg("data.root=/voc")) == []
    auto = ("irn.ir_label.fg_threshold=auto", "irn.ir_label.bg_threshold=auto", "irn.module.radius=auto",
            "irn.random_walk.exp_times=auto", "irn.random_walk.sem_seg_bg_threshold=auto")
    assert config_errors(compose_cfg("data.root=/voc", *auto)) == []  # derived per run (resolve_auto)
    # combinations the climb itself rejects, and keys that moved, are named too
    assert config_errors(compose_cfg("data.root=/voc", "cam.climb.impl=reference", "cam.climb.compile=true")) == [
        "cam: impl='reference' is the official fp32 loop: no autocast, no channels_last, no compile"]
    assert "cam.climb.lam" in config_errors(compose_cfg("data.root=/voc", "+cam.lam=5"))[0]


def test_run_pipeline_checks_before_any_stage_runs(compose_cfg, fake_stages):
    cfg = compose_cfg("data.root=/voc", "cam.climb.lam=abc", "cam.climb.tau=2", "stages=[train_cam,make_cam]")
    with pytest.raises(ConfigError) as err:
        pipeline.run_pipeline(cfg)
    assert "cam.climb.lam" in str(err.value) and "cam.climb.tau" in str(err.value)  # every bad key, at once
    assert fake_stages.calls == []


def test_missing_mandatory_value_is_named(compose_cfg):
    assert "data.root must be set: a path (the VOC2012 folder" in "\n".join(config_errors(compose_cfg("data=voc12")))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_accelerator_without_gpu_fails_the_same_way_everywhere(compose_cfg, fake_stages):
    from advcam_pl.pipeline.make_sem_seg import inference_device

    cfg = compose_cfg("data.root=/voc", "trainer=gpu", "stages=[make_sem_seg]")
    with pytest.raises(ConfigError, match="trainer.accelerator=gpu but no CUDA GPU is visible"):
        pipeline.run_pipeline(cfg)
    assert fake_stages.calls == []
    # make_sem_seg picks its device itself: the same error, not a silent CPU fallback
    with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
        inference_device(cfg)
    assert inference_device(compose_cfg("data.root=/voc", "trainer=cpu")).type == "cpu"


def test_missing_dense_crf_fails_before_the_sweep_with_the_install_hint(compose_cfg, fake_stages, monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)  # as if not installed
    cfg = compose_cfg("data.root=/voc", "stages=[make_cam,eval_cam]", "eval_cam.crf=true", "trainer=cpu")
    with pytest.raises(ImportError, match=r"stage\(s\) eval_cam of this run use the dense CRF.*pip install pydensecrf2"):
        pipeline.run_pipeline(cfg)
    assert fake_stages.calls == []
    # without a stage that uses it, nothing is asked of the environment
    check_config(compose_cfg("data.root=/voc", "stages=[make_cam,eval_cam]", "eval_cam.crf=false", "trainer=cpu"))


def test_crf_functions_say_how_to_install_when_the_package_is_missing(monkeypatch):
    import numpy as np

    from advcam_pl.refine.crf import crf_inference_label, crf_inference_prob

    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ImportError, match="pip install pydensecrf2"):
        crf_inference_label(img, np.zeros((8, 8), int), n_labels=2)
    with pytest.raises(ImportError, match="pip install pydensecrf2"):
        crf_inference_prob(img, np.full((2, 8, 8), 0.5, np.float32))
