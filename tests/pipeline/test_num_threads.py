"""``num_threads``: run_pipeline pins torch's intra-op threads from the config and logs them."""

import logging

import pytest
import torch

import advcam_pl.pipeline as pipeline
from advcam_pl.pipeline.common import available_cores


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_run_pipeline_pins_torch_threads_from_the_config(compose_cfg, fake_stages, restore_threads, caplog):
    def run(value: str) -> int:
        pipeline.run_pipeline(compose_cfg("data.root=/voc", "stages=[eval_cam]", "overwrite=true",
                                          f"num_threads={value}"))
        return torch.get_num_threads()

    caplog.set_level(logging.INFO, logger="advcam_pl.pipeline.common")
    torch.set_num_threads(1)
    assert run("2") == 2
    assert "torch intra-op threads: 2 (num_threads=2)" in caplog.text
    assert run("cores") == available_cores()
    torch.set_num_threads(1)
    assert run("null") == 1  # torch's setting left as it is
    assert "torch intra-op threads: 1 (num_threads=None)" in caplog.text
    assert fake_stages.calls == ["eval_cam"] * 3
