"""Where backbone weights come from: torchvision's ImageNet weights, a local file, or nothing.

Every loader returns how many tensors it really copied, and callers assert on it: a silent
``strict=False`` that loads nothing is a known failure of other implementations.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

_TORCHVISION_WEIGHTS = {
    18: "ResNet18_Weights",
    34: "ResNet34_Weights",
    50: "ResNet50_Weights",
    101: "ResNet101_Weights",
    152: "ResNet152_Weights",
}


class WeightsUnavailableError(RuntimeError):
    pass


def imagenet_state_dict(depth: int) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet ResNet-``depth`` state dict (downloaded once into the torch hub cache)."""
    import torchvision.models as tvm

    weights = getattr(tvm, _TORCHVISION_WEIGHTS[depth]).IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as err:  # URLError, OSError, ...: no network
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        raise WeightsUnavailableError(
            f"could not fetch torchvision's ImageNet weights for ResNet-{depth} ({err}). Offline, either put "
            f"the file {Path(weights.url).name} into {hub} (torch.hub's cache; set TORCH_HOME to move it), "
            f"or pass a local checkpoint path as `pretrained=/path/to/resnet{depth}.pth`, or start from "
            f"scratch with `pretrained=null`."
        ) from err


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth`` file or a Lightning checkpoint (its ``state_dict``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, expected a state dict")
    return obj


def load_matching(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str = "") -> int:
    """Copy every tensor of ``state_dict`` whose name (after stripping ``prefix``) and shape match
    a parameter or buffer of ``module``; returns how many were copied."""
    own = module.state_dict()
    matched = {}
    for name, tensor in state_dict.items():
        if prefix:
            if not name.startswith(prefix):
                continue
            name = name[len(prefix):]
        if name in own and own[name].shape == tensor.shape:
            matched[name] = tensor
    module.load_state_dict(matched, strict=False)
    log.info("loaded %d / %d tensors into %s", len(matched), len(own), type(module).__name__)
    return len(matched)


def expected_backbone_tensors(module: nn.Module) -> int:
    """Tensors a full ImageNet ResNet load must fill: everything but BN's ``num_batches_tracked``."""
    return sum(1 for k in module.state_dict() if not k.endswith("num_batches_tracked"))


def load_backbone_weights(backbone: nn.Module, pretrained: str | None, depth: int) -> int:
    """Load ``pretrained`` (``"imagenet"``, a file path, or ``None``) into ``backbone``.

    Returns the number of tensors loaded and raises when an ImageNet load did not fill every
    backbone tensor (names or shapes drifted).
    """
    if pretrained is None or pretrained in ("none", "null", ""):
        return 0
    if pretrained == "imagenet":
        n = load_matching(backbone, imagenet_state_dict(depth))
        expected = expected_backbone_tensors(backbone)
        if n != expected:
            raise RuntimeError(f"ImageNet ResNet-{depth}: loaded {n} tensors, the backbone has {expected}")
        return n
    state = read_state_dict(pretrained)
    n = load_matching(backbone, state)
    if n == 0:
        # Lightning checkpoints of our modules keep the backbone under "backbone."
        n = load_matching(backbone, state, prefix="backbone.")
    if n == 0:
        raise RuntimeError(f"{pretrained}: no tensor matched the ResNet-{depth} backbone by name and shape")
    return n
