"""Every option of every config group composes, and the root config resolves."""

import pytest
from omegaconf import OmegaConf

from advcam_pl.config import CONFIG_DIR
from advcam_pl.config_checks import config_errors

# experiment_cam / experiment_classifier are not choices: the root config picks
# <experiment>_<cam>.yaml / <experiment>_<classifier>.yaml from them itself.
GROUPS = sorted(p.name for p in CONFIG_DIR.iterdir()
                if p.is_dir() and p.name not in ("hydra", "experiment_cam", "experiment_classifier"))


def options(group):
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "group,option", [(g, o) for g in GROUPS for o in options(g)], ids=lambda x: str(x)
)
def test_every_group_option_composes_and_resolves(group, option, compose_cfg):
    cfg = compose_cfg("data.root=/voc", f"{group}={option}")
    # Resolving catches interpolations that point at keys no group defines.
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert container["stages"]
    assert config_errors(cfg) == []  # every shipped value passes the compose-time checks


@pytest.mark.parametrize("name", options("experiment_cam"))
def test_every_experiment_cam_file_names_an_experiment_and_a_cam_option(name, compose_cfg):
    pairs = [(e, c) for e in options("experiment") for c in options("cam") if name == f"{e}_{c}"]
    assert len(pairs) == 1, f"experiment_cam/{name}.yaml: expected <experiment>_<cam>.yaml"
    experiment, cam = pairs[0]
    cfg = compose_cfg("data.root=/voc", f"experiment={experiment}", f"cam={cam}", return_hydra_config=True)
    assert cfg.hydra.runtime.choices["experiment_cam@cam"] == name
    assert cfg.cam.name == cam


@pytest.mark.parametrize("name", options("experiment_classifier"))
def test_every_experiment_classifier_file_names_an_experiment_and_a_classifier(name, compose_cfg):
    pairs = [(e, c) for e in options("experiment") for c in options("classifier") if name == f"{e}_{c}"]
    assert len(pairs) == 1, f"experiment_classifier/{name}.yaml: expected <experiment>_<classifier>.yaml"
    experiment, classifier = pairs[0]
    cfg = compose_cfg("data.root=/voc", f"experiment={experiment}", f"classifier={classifier}",
                      return_hydra_config=True)
    assert cfg.hydra.runtime.choices["experiment_classifier@classifier"] == name
    assert cfg.classifier.name == classifier


def test_the_demo_trains_mobilenet_v2_from_scratch_and_the_default_from_imagenet(compose_cfg):
    demo = compose_cfg("experiment=demo", "classifier=mobilenet_v2").classifier
    assert demo.module._target_ == "advcam_pl.models.torchvision_cam.TorchvisionCAMClassifier"
    assert demo.module.pretrained is None and demo.module.norm == "batch" and demo.module.output_stride == 16
    assert demo.train.crop_size == 128 and demo.train.max_epochs == 15  # the demo's crops, the demo's schedule
    voc = compose_cfg("classifier=mobilenet_v2").classifier
    assert voc.module.pretrained == "imagenet" and voc.module.norm == "frozen" and voc.train.crop_size == 512
    assert compose_cfg("experiment=demo").classifier.module.depth == 18  # the ResNet-18 demo unchanged


def test_the_demo_experiment_sets_advcams_steps_and_leaves_plain_cam_alone(compose_cfg):
    for cam in ("advcam", "advcam_noreg"):
        assert compose_cfg("experiment=demo", f"cam={cam}").cam.climb.steps == 8
        assert compose_cfg("data.root=/voc", f"cam={cam}").cam.climb.steps == 27
    assert "climb" not in compose_cfg("experiment=demo", "cam=cam").cam
    assert compose_cfg("experiment=demo", "cam=advcam", "cam.climb.steps=3").cam.climb.steps == 3  # the command line wins


def test_artifacts_live_under_the_work_dir(compose_cfg):
    cfg = compose_cfg("data.root=/voc", "paths.work_dir=/work_here")
    for name, path in cfg.artifacts.items():
        assert str(path).startswith("/work_here/"), name


def test_default_logger_is_offline_wandb(compose_cfg):
    cfg = compose_cfg("data.root=/voc")
    assert cfg.logger.wandb.offline is True
    assert cfg.trainer.inference_mode is False


def test_unknown_stage_is_rejected_before_anything_runs():
    from advcam_pl.pipeline import stage_names

    with pytest.raises(ValueError, match="unknown stage 'make_cams'"):
        stage_names(["train_cam", "make_cams"])


def test_slurm_launcher_composes(compose_cfg):
    cfg = compose_cfg("hydra/launcher=slurm", "data.root=/voc", return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1


def test_the_source_tree_configs_are_found(repo_root):
    assert CONFIG_DIR == repo_root / "conf"
