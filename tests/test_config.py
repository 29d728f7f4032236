"""Every option of every config group composes, and the root config resolves."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_cfg(tmp_path, overrides=()):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"paths.output_dir={tmp_path}", "data.root=/voc", *overrides])


@pytest.mark.parametrize(
    "group,option", [(g, o) for g in GROUPS for o in options(g)], ids=lambda x: str(x)
)
def test_every_group_option_composes_and_resolves(group, option, tmp_path):
    cfg = compose_cfg(tmp_path, [f"{group}={option}"])
    # Resolving catches interpolations that point at keys no group defines.
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert container["stages"]


def test_artifacts_live_under_the_work_dir(tmp_path):
    cfg = compose_cfg(tmp_path, ["paths.work_dir=/work_here"])
    for name, path in cfg.artifacts.items():
        assert str(path).startswith("/work_here/"), name


def test_default_logger_is_offline_wandb(tmp_path):
    cfg = compose_cfg(tmp_path)
    assert cfg.logger.wandb.offline is True
    assert cfg.trainer.inference_mode is False


def test_unknown_stage_is_rejected_before_anything_runs():
    from advcam_pl.pipeline import stage_names

    with pytest.raises(ValueError, match="unknown stage 'make_cams'"):
        stage_names(["train_cam", "make_cams"])


def test_slurm_launcher_composes():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "data.root=/voc"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1
