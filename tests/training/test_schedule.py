"""One poly schedule for every network, checked against the two official rules it stands for."""

import math

import pytest
import torch

from advcam_pl.training.schedule import poly_factor, poly_schedule


def irn_poly_optimizer_lrs(max_step: int, steps: int, power: float = 0.9) -> list[float]:
    """IRN's torchutils.PolyOptimizer, step by step: set the factor before a step while global_step < max_step."""
    lrs, lr = [], 1.0
    for global_step in range(steps):
        if global_step < max_step:
            lr = (1 - global_step / max_step) ** power
        lrs.append(lr)
    return lrs


def kazuto_polynomial_lr_lrs(iter_max: int, step_size: int, steps: int, power: float = 0.9) -> list[float]:
    """kazuto1011/deeplab-pytorch: iteration i (1-based) trains, then scheduler.step(epoch=i) sets
    (1 - i/iter_max)^power when i % step_size == 0 and i <= iter_max, else keeps the rate."""
    lrs, lr = [], 1.0
    for iteration in range(1, steps + 1):
        lrs.append(lr)
        if iteration % step_size == 0 and iteration <= iter_max:
            lr = (1 - iteration / iter_max) ** power
    return lrs


def test_interval_1_is_irns_poly_optimizer_and_holds_after_the_end():
    ours = [poly_factor(k, 30) for k in range(36)]
    assert ours == pytest.approx(irn_poly_optimizer_lrs(30, 36))
    assert ours[-1] == ours[29] > 0


def test_interval_10_is_kazuto1011s_polynomial_lr():
    ours = [poly_factor(k, 100, interval=10) for k in range(100)]
    assert ours == pytest.approx(kazuto_polynomial_lr_lrs(100, 10, 100))
    assert ours[9] == 1.0 and ours[10] == pytest.approx(0.9**0.9)


def test_lightning_schedule_sets_the_rate_of_each_step():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [param], "lr": 0.1}], lr=0.1)
    entry = poly_schedule(optimizer, 20, power=0.9, interval=1)
    assert entry["interval"] == "step"
    for k in range(20):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - k / 20) ** 0.9)
        optimizer.step()
        entry["scheduler"].step()


@pytest.mark.parametrize("length", [math.inf, 0, -1])
def test_schedule_needs_a_finite_length(length):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="finite length"):
        poly_schedule(optimizer, length)
