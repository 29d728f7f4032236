"""Hydra entry point: ``python -m advcam_pl stages=[...] data=... overrides`` (also ``advcam-pl``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from advcam_pl.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from advcam_pl.pipeline import run_pipeline

    results = run_pipeline(cfg)
    # A sweeper (Optuna) optimises the last stage's headline metric, when it has one; a skipped
    # evaluation stage returns its recorded metrics, objective included.
    objective = results[-1].metrics.get("objective") if results else None
    return None if objective is None else float(objective)


if __name__ == "__main__":
    main()
