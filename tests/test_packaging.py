"""A plain (non-editable) install runs: the wheel holds every module and config, and both
``python -m advcam_pl`` and the ``advcam-pl`` script compose and run a stage from elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds and installs the package, then trains a tiny classifier


def relative_files(root: Path, pattern: str) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob(pattern) if "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def installed(repo_root, tmp_path_factory) -> Path:
    """``pip install --no-deps --no-build-isolation --target`` of a copy of the checkout (a build
    writes into its source tree); offline, with the running interpreter's setuptools."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(repo_root / name, source / name)
    for name in ("src", "conf"):
        shutil.copytree(repo_root / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    target = base / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True)
    return target


def run_installed(target: Path, cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ADVCAM_ROOT")}
    env.update(PYTHONPATH=str(target), OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="1")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_the_install_holds_every_module_and_every_config(installed, repo_root):
    missing = relative_files(repo_root / "src" / "advcam_pl", "*.py") - relative_files(installed / "advcam_pl", "*.py")
    assert not missing, f"not installed: {sorted(missing)} (list their package in pyproject.toml)"
    assert relative_files(repo_root / "conf", "*.yaml") == relative_files(installed / "advcam_pl" / "conf", "*.yaml")


def test_the_installed_package_finds_its_configs_from_another_directory(installed, tmp_path):
    out = run_installed(installed, tmp_path, sys.executable, "-c",
                        "import advcam_pl, advcam_pl.config as c; print(advcam_pl.__file__); print(c.CONFIG_DIR)")
    assert out.split() == [str(installed / "advcam_pl" / "__init__.py"), str(installed / "advcam_pl" / "conf")]

    out = run_installed(installed, tmp_path, sys.executable, "-m", "advcam_pl", "experiment=demo", "cam=advcam",
                        "--cfg", "job")
    assert "task_name: demo" in out and "steps: 8" in out


def test_the_console_script_runs_a_stage(installed, synthetic_root, tmp_path):
    work = tmp_path / "work"
    run_installed(installed, tmp_path, str(installed / "bin" / "advcam-pl"), "stages=[train_cam]",
                  "data=synthetic", f"data.root={synthetic_root}", "classifier=resnet18",
                  "classifier.train.max_epochs=1", "classifier.train.crop_size=32",
                  "classifier.train.resize_long=[32,48]", "trainer=cpu", "+trainer.enable_progress_bar=false",
                  "logger=none", f"paths.work_dir={work}")
    assert (work / "checkpoints" / "cam_classifier.ckpt").is_file()
