"""AdvCAM tests run on tiny tensors: one intra-op thread is faster than several (and much faster
on a shared, oversubscribed machine); the previous setting is restored after each test."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
