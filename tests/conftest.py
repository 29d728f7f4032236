"""Fixtures shared by all tests: the repo root, composed configs, tiny synthetic VOC trees (one of
two image sizes only), the real VOC fixtures."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from advcam_pl.config import compose_config
from advcam_pl.data.synthetic import generate_dataset

# Tests run tiny tensors: one intra-op thread is faster than several, and far faster on a busy
# 2-core machine, where OpenMP threads spin-wait on each other. Flushing denormals keeps the
# forward passes of randomly initialised networks from crawling; it must run before torch starts
# its thread pool, so it sits here at import time.
torch.set_flush_denormal(True)
torch.set_num_threads(1)
# W&B never goes online from a test (the default logger is an offline WandbLogger anyway).
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")

REPO_ROOT = Path(__file__).resolve().parents[1]
# A clean clone has ../shared beside it (CI); without it, the tests that need real VOC files skip.
VOC_REAL_ROOT = REPO_ROOT.parent / "shared" / "fixtures" / "voc2012_real"

# The session dataset: 24 train_aug (12 of them train), 8 val, 4 test images, long side 48-64 px.
SYNTHETIC_KWARGS = dict(seed=0, num_train=24, num_val=8, num_test=4, long_side=(48, 64))


def generate_overrides(**kwargs) -> list[str]:
    """Hydra overrides that make ``data.generate`` describe a set generated with ``kwargs`` (the demo
    and bench-chain refuse a set whose ``synthetic.json`` says otherwise)."""
    return [f"data.generate.{k}=[{','.join(map(str, v))}]" if isinstance(v, (tuple, list)) else f"data.generate.{k}={v}"
            for k, v in kwargs.items()]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def compose_cfg(tmp_path) -> Callable[..., DictConfig]:
    """``compose_cfg(*overrides, return_hydra_config=False)``: the root config as ``python -m
    advcam_pl`` composes it, every output under this test's ``tmp_path``
    (``paths.output_dir`` and ``paths.work_dir``), then ``overrides``."""

    def compose(*overrides: str, return_hydra_config: bool = False) -> DictConfig:
        return compose_config([f"paths.output_dir={tmp_path}", f"paths.work_dir={tmp_path}", *overrides],
                              return_hydra_config=return_hydra_config)

    return compose


@pytest.fixture(scope="session")
def synthetic_factory(tmp_path_factory) -> Callable[..., Path]:
    """``make(**generate_dataset_kwargs) -> root``: one synthetic VOC tree per distinct kwargs,
    generated once per session (read-only for the tests: copy it before changing files)."""
    cache: dict[str, Path] = {}

    def make(**kwargs) -> Path:
        key = json.dumps(kwargs, sort_keys=True, default=list)
        if key not in cache:
            root = tmp_path_factory.mktemp("synthetic") / "VOC2012"
            generate_dataset(root, **kwargs)
            cache[key] = root
        return cache[key]

    return make


@pytest.fixture(scope="session")
def synthetic_root(synthetic_factory) -> Path:
    """A tiny synthetic VOC2012 tree (see ``SYNTHETIC_KWARGS``); treat it as read-only."""
    return synthetic_factory(**SYNTHETIC_KWARGS)


@pytest.fixture(scope="session")
def two_size_root(synthetic_factory) -> Path:
    """A synthetic tree whose 24 train_aug images (12 train) have two sizes only, 48×36 and 36×48
    (like VOC's 500×375 / 375×500), so that size-bucketed batches hold several images; read-only."""
    return synthetic_factory(seed=1, num_train=24, num_val=4, num_test=2, long_side=(48, 48),
                             short_ratio=(0.75, 0.75))


@pytest.fixture(scope="session")
def voc_real_root() -> Path:
    """Real PASCAL VOC 2012 files (../shared/fixtures/voc2012_real); skips when absent."""
    if not VOC_REAL_ROOT.is_dir():
        pytest.skip(f"real VOC fixtures not found at {VOC_REAL_ROOT} (clone with ../shared beside the repo)")
    return VOC_REAL_ROOT


@pytest.fixture(scope="session")
def killed_writer_temp() -> Callable[[Path], Path]:
    """``temp(target) -> path``: the temporary name that a writer killed with -9 (a process that
    has exited) would have left for ``target`` (not created)."""
    import os
    import subprocess
    import sys

    from advcam_pl.io import temp_prefix

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()

    def temp(target: Path) -> Path:
        return target.with_name(temp_prefix(target).replace(f"-{os.getpid()}.", f"-{proc.pid}.") + "k3j2h1g0.tmp")

    return temp


@pytest.fixture
def offline(monkeypatch):
    """torchvision's weight downloads fail as they do without a network."""
    import urllib.error

    from torchvision.models._api import WeightsEnum

    def no_network(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", no_network)
