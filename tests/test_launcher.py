"""SLURM launcher × trainer configs: the submitit job matches what Lightning's DDP expects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import submitit
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from advcam_pl.config import CONFIG_DIR, compose_config

CONF_DIR = CONFIG_DIR
# Hydra's own launcher plus every file of conf/hydra/launcher.
LAUNCHERS = ["basic", *sorted(p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml"))]
TRAINERS = sorted(p.stem for p in (CONF_DIR / "trainer").glob("*.yaml"))
# devices=-1 ("every GPU of this machine") cannot size a SLURM job; the README says to use slurm_ddp.
LOCAL_ONLY_TRAINERS = {"ddp"}


def compose_with_hydra(overrides: list[str]) -> DictConfig:
    return compose_config(overrides, return_hydra_config=True)


def sbatch_script(cfg: DictConfig, monkeypatch) -> str:
    """The sbatch file submitit writes for ``cfg`` through the plugin's own ``launch``."""
    from submitit.slurm.slurm import SlurmExecutor

    captured: list[str] = []

    def map_array(executor, fn, *args):
        captured.append(executor._executor._make_submission_file_text("python -u job.py", "uid"))
        return []

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # no srun here
    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=lambda c: None, config=cfg)
    launcher.launch([["stages=make_cam"]], initial_job_idx=0)
    return captured[0]


def sbatch_flag(script: str, name: str) -> str | None:
    match = re.search(rf"^#SBATCH --{name}=(\S+)$", script, flags=re.M)
    return match.group(1) if match else None


@pytest.fixture
def sweep_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ADVCAM_ROOT", str(tmp_path))  # paths.log_dir → hydra.sweep.dir
    return tmp_path


@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_every_launcher_trainer_pair_composes_a_consistent_job(launcher, trainer, sweep_root, monkeypatch):
    cfg = compose_with_hydra([f"hydra/launcher={launcher}", f"trainer={trainer}"])
    if launcher == "basic":
        assert cfg.hydra.launcher._target_ == "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
        return
    job = cfg.hydra.launcher
    if trainer in LOCAL_ONLY_TRAINERS:
        assert cfg.trainer.devices == -1
        pytest.skip(f"trainer={trainer} runs on every GPU of one machine; on SLURM use trainer=slurm_ddp")
    num_nodes = cfg.trainer.get("num_nodes", 1)
    assert job.tasks_per_node == job.gpus_per_node == cfg.trainer.devices
    assert job.nodes == num_nodes
    script = sbatch_script(cfg, monkeypatch)
    assert sbatch_flag(script, "ntasks-per-node") == str(cfg.trainer.devices)
    assert sbatch_flag(script, "gpus-per-node") == str(cfg.trainer.devices)
    assert sbatch_flag(script, "nodes") == str(num_nodes)


def test_devices_are_a_gpu_count_in_every_trainer_but_the_local_ones():
    uncounted = set()
    for trainer in TRAINERS:
        devices = compose_with_hydra([f"trainer={trainer}"]).trainer.devices
        if not (isinstance(devices, int) and devices > 0):
            uncounted.add(trainer)
    assert uncounted == LOCAL_ONLY_TRAINERS


def test_multi_node_ddp_job_is_one_task_per_gpu_and_lightning_sees_it(sweep_root, monkeypatch, tmp_path):
    cfg = compose_with_hydra(["hydra/launcher=slurm", "trainer=slurm_ddp", "trainer.devices=4",
                              "trainer.num_nodes=2", "hydra.launcher.partition=gpu"])
    script = sbatch_script(cfg, monkeypatch)
    assert sbatch_flag(script, "nodes") == "2"
    assert sbatch_flag(script, "ntasks-per-node") == "4"
    assert sbatch_flag(script, "gpus-per-node") == "4"
    assert sbatch_flag(script, "partition") == "gpu"
    assert "srun" in script  # one process per task, started by SLURM

    # What SLURM sets in task 5 of that job (second node, local rank 1), from the sbatch flags.
    env = {"SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": sbatch_flag(script, "ntasks-per-node"),
           "SLURM_NNODES": sbatch_flag(script, "nodes"), "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
           "SLURM_NODEID": "1", "SLURM_JOB_ID": "1234", "SLURM_JOB_NAME": "advcam",
           "SLURM_NODELIST": "gpu[01-02]"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from lightning_fabric.plugins.environments import SLURMEnvironment

    # accelerator=cpu: the same DDP set-up without GPUs on this machine.
    trainer = instantiate(OmegaConf.to_container(cfg.trainer), accelerator="cpu", logger=False,
                          default_root_dir=str(tmp_path))
    slurm = trainer.strategy.cluster_environment
    assert isinstance(slurm, SLURMEnvironment) and slurm.creates_processes_externally
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (8, 5, 1, 1)
    # the check Lightning's DDP launcher runs before fit/predict
    launcher = trainer.strategy.launcher
    slurm.validate_settings(num_devices=launcher.num_processes, num_nodes=launcher.num_nodes)
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")  # a job with fewer tasks than trainer.devices
    with pytest.raises(ValueError, match="number of tasks per node configured in SLURM"):
        slurm.validate_settings(num_devices=launcher.num_processes, num_nodes=launcher.num_nodes)
