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


def _tf32_switches() -> list[tuple[object, str, object, object]]:
    """``(namespace, attribute, value for TF32, value for IEEE fp32)`` of cuDNN convolutions and
    CUDA matmuls: the ``fp32_precision`` switches where torch has them (2.9+; mixing them with the
    legacy ``allow_tf32`` flags is an error there), else the ``allow_tf32`` flags."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return [(conv, "fp32_precision", "tf32", "ieee"),
                (torch.backends.cuda.matmul, "fp32_precision", "tf32", "ieee")]
    return [(torch.backends.cudnn, "allow_tf32", True, False),
            (torch.backends.cuda.matmul, "allow_tf32", True, False)]


@contextmanager
def tf32(enabled: bool | None) -> Iterator[None]:
    """TF32 for CUDA convolutions and matmuls inside (``True``), strict IEEE fp32 (``False``), or
    torch's process-wide setting left alone (``None``; PyTorch's default runs cuDNN convolutions in
    TF32 and matmuls in fp32). The previous switches are restored on exit; no effect on CPU ops."""
    if enabled is None:
        yield
        return
    switches = _tf32_switches()
    before = [getattr(ns, attr) for ns, attr, _, _ in switches]
    for ns, attr, on, off in switches:
        setattr(ns, attr, on if enabled else off)
    try:
        yield
    finally:
        for (ns, attr, _, _), value in zip(switches, before):
            setattr(ns, attr, value)
