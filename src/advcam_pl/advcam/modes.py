"""Context managers that put a user's model into climbing shape and restore it afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` inside, every submodule's own ``training`` flag restored on exit.

    Climbing must not use batch statistics: the fast path stacks several classes in one batch,
    which would couple them through a BatchNorm in training mode.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[nn.Module]:
    """``requires_grad_(False)`` on every parameter inside; the previous flags restored on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _is_channels_last(model: nn.Module) -> bool:
    for p in model.parameters():
        if p.dim() == 4:
            return p.is_contiguous(memory_format=torch.channels_last)
    return False


@contextmanager
def channels_last(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Convert the model's 4-D weights to channels-last inside (and back on exit, if they were not)."""
    if not enabled or _is_channels_last(model):
        yield model
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)
