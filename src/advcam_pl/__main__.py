"""Hydra entry point: ``python -m advcam_pl stages=[...] data=... overrides``."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    from advcam_pl.pipeline import run_pipeline

    results = run_pipeline(cfg)
    # A sweeper optimises the last stage's headline metric, when it has one.
    last = results[-1][1] if results else {}
    return last.get("objective") if isinstance(last, dict) else None


if __name__ == "__main__":
    main()
