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


def _tf32_switches() -> list[tuple[object, str]]:
    """``(namespace, attribute)`` of the TF32 switches of cuDNN convolutions and CUDA matmuls.

    The ``allow_tf32`` flags, not torch 2.9's per-operator ``fp32_precision``: once that one
    differs between operators (e.g. conv but not RNN), reading ``allow_tf32`` raises, and
    Lightning and Inductor read it.
    """
    return [(torch.backends.cudnn, "allow_tf32"), (torch.backends.cuda.matmul, "allow_tf32")]


@contextmanager
def tf32(enabled: bool | None) -> Iterator[None]:
    """TF32 for CUDA convolutions and matmuls inside (``True``), strict IEEE fp32 (``False``), or
    torch's process-wide setting left alone (``None``; PyTorch's default runs cuDNN convolutions in
    TF32 and matmuls in fp32). The previous switches are restored on exit; no effect on CPU ops."""
    if enabled is None:
        yield
        return
    switches = _tf32_switches()
    before = [getattr(ns, attr) for ns, attr in switches]
    for ns, attr in switches:
        setattr(ns, attr, bool(enabled))
    try:
        yield
    finally:
        for (ns, attr), value in zip(switches, before):
            setattr(ns, attr, value)
