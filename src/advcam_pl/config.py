"""Where the Hydra configs live, and composing them outside ``@hydra.main``.

The configs are the top-level ``conf/`` of the repository. A wheel ships that folder as package
data ``advcam_pl/conf`` (``pyproject.toml``: ``package-dir``), so :data:`CONFIG_DIR` is the
packaged copy when it exists and the checkout's ``conf/`` otherwise (editable install, or
``PYTHONPATH=src``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

_PACKAGE_DIR = Path(__file__).resolve().parent


def _find_config_dir() -> Path:
    candidates = (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parents[1] / "conf")
    for candidate in candidates:
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        "advcam_pl: no config.yaml in " + " or ".join(str(c) for c in candidates)
        + "; reinstall the package (its wheel ships conf/ as advcam_pl/conf)"
    )


CONFIG_DIR: Path = _find_config_dir()


def compose_config(overrides: Sequence[str] = (), *, return_hydra_config: bool = False) -> DictConfig:
    """``conf/config.yaml`` composed with Hydra ``overrides``, as ``python -m advcam_pl`` would
    (without a run directory: set ``paths.output_dir``/``paths.work_dir`` unless an experiment does)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)
