"""A torchvision classifier (MobileNetV2, EfficientNet, ...) as a CAM classifier of stage train_cam.

The network is torchvision's own model, built by name (``torchvision.models.get_model``) with
``num_classes`` outputs; AdvCAM reaches it through the adapter protocol
(:func:`~advcam_pl.advcam.adapters.as_cam_model`): ``features`` is the adapter's feature map and
``classifier`` a ``[C, K, 1, 1]`` view of the model's own head ``Linear``. Nothing is copied, so
training the LightningModule trains the torchvision model, and a checkpoint holds its plain
``state_dict`` under ``network.*``. Any architecture the adapter accepts by structure works —
one whose head is linear in the globally pooled features; ConvNeXt (LayerNorm on the pooled
vector) and MobileNetV3 (an MLP head) are refused with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from advcam_pl.advcam.adapters import CAMAdapter, LinearAsConv1x1, as_cam_model
from advcam_pl.models.cam_training import CAMTrainingModule
from advcam_pl.models.weights import (
    LoadedWeights,
    checked_load,
    fetch_torchvision_weights,
    load_matching,
    read_weights_file,
)

NORMS = ("frozen", "batch")


def frozen_batch_norm(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.BatchNorm2d`` replaced (in place) by a ``FrozenBatchNorm2d`` of
    the same size and ``eps``: statistics and affine fixed whatever the train/eval mode."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d(child.num_features, eps=child.eps))
        else:
            frozen_batch_norm(child)
    return module


def build_network(arch: str, num_classes: int, norm: str) -> nn.Module:
    """torchvision's ``arch`` (e.g. ``"mobilenet_v2"``, ``"efficientnet_b0"``), random init,
    ``num_classes`` outputs, BatchNorm frozen or trainable."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {list(NORMS)}, got {norm!r}")
    try:
        network = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    except ValueError as err:
        raise ValueError(f"classifier.module.arch={arch!r}: not a torchvision classifier ({err})") from err
    return frozen_batch_norm(network) if norm == "frozen" else network


def head_names(network: nn.Module, head: nn.Linear) -> set[str]:
    """The state-dict names of ``head``'s tensors inside ``network``."""
    prefix = next(name for name, m in network.named_modules() if m is head)
    return {f"{prefix}.{p}" for p, _ in head.named_parameters()}


def load_network_weights(network: nn.Module, head: nn.Linear, pretrained: str | os.PathLike | None, arch: str,
                         owner: str, allow_partial: bool = False) -> LoadedWeights:
    """Load ``pretrained`` into torchvision's ``arch`` model ``network``, all but its ``head``
    (whose classes differ): ``"imagenet"`` (torchvision's IMAGENET1K_V1 weights), a file (a
    torchvision state dict, or a checkpoint of :class:`TorchvisionCAMClassifier` of the same
    ``arch``), or ``None`` (random init). A partial load is an error unless ``allow_partial``."""
    from advcam_pl.errors import ArchitectureMismatchError

    skip = head_names(network, head)
    expected = sum(1 for k in network.state_dict() if k not in skip and not k.endswith("num_batches_tracked"))
    if pretrained is None or str(pretrained).lower() in ("", "none", "null"):
        return LoadedWeights(0, expected, "none")
    if pretrained == "imagenet":
        weights = torchvision.models.get_model_weights(arch)["IMAGENET1K_V1"]
        state, source = fetch_torchvision_weights(weights, arch, arch), f"torchvision's ImageNet {arch}"
    else:
        source = os.fspath(pretrained)
        state, hparams = read_weights_file(source)
        made_for = hparams.get("arch", f"resnet{hparams['depth']}" if "depth" in hparams else arch)
        if made_for != arch:
            raise ArchitectureMismatchError(f"{owner}: {source} holds a {made_for} network but this one is "
                                            f"configured as {arch}; use weights of the same architecture")
        if any(k.startswith("network.") for k in state):  # a checkpoint of this module
            state = {k[len("network."):]: v for k, v in state.items() if k.startswith("network.")}
    state = {k: v for k, v in state.items() if k not in skip and not k.endswith("num_batches_tracked")}
    loaded = LoadedWeights(load_matching(network, state), expected, source)
    return checked_load(loaded, owner, f"torchvision's {arch}", allow_partial)


class TorchvisionCAMClassifier(CAMTrainingModule):
    """torchvision's ``arch`` trained as a multi-label CAM classifier, seen through the adapter.

    ``features(x)`` ``[B, K, h, w]`` with ``h, w = ⌈H/s⌉, ⌈W/s⌉`` (``s = output_stride``),
    ``classifier.weight`` ``[num_classes, K, 1, 1]`` (a view of the head ``Linear``), ``forward(x)``
    logits ``[B, num_classes]``, ``cam(x)`` ``[B, num_classes, h, w]``; training as
    :class:`~advcam_pl.models.cam_training.CAMTrainingModule`.

    Args:
        arch: a torchvision classifier name whose head is linear on the pooled features
            (``mobilenet_v2``, ``efficientnet_b0``, ``resnet50``, ``regnet_y_400mf``, ...).
        pretrained: ``"imagenet"`` (torchvision's IMAGENET1K_V1 weights), a path to a ``.pth``
            state dict or a checkpoint of this module, or ``None`` (random init); every tensor but
            the head's must be filled (:func:`load_network_weights`). A checkpoint saved from
            this module records ``pretrained=None``.
        num_classes: 20 for PASCAL VOC (no background).
        norm: ``"frozen"`` (FrozenBatchNorm2d, for ImageNet weights) or ``"batch"`` (trainable, from
            scratch; compute CAMs in ``eval()`` mode).
        output_stride: ``32`` (the network as built) or ``16`` (the adapter removes the last
            stride and dilates what follows, for MobileNetV2, EfficientNet and the ResNet family);
            training and CAMs use the same stride.
        lr, classifier_lr_mult, momentum, weight_decay, poly_power, poly_interval: as
            :class:`~advcam_pl.models.cam_classifier.CAMClassifier`.
        allow_partial_init: accept weights that fill only some tensors (a warning gives the count).
    """

    def __init__(
        self,
        arch: str = "mobilenet_v2",
        pretrained: str | os.PathLike | None = "imagenet",
        num_classes: int = 20,
        norm: str = "frozen",
        output_stride: int = 16,
        lr: float = 0.01,
        classifier_lr_mult: float = 10.0,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        poly_power: float = 0.9,
        poly_interval: int = 1,
        allow_partial_init: bool = False,
    ):
        super().__init__(num_classes)
        pretrained = None if pretrained is None else os.fspath(pretrained)
        if output_stride not in (16, 32):
            raise ValueError(f"output_stride must be 16 or 32, got {output_stride!r}")
        self.save_hyperparameters()
        self.network = build_network(arch, num_classes, norm)
        # Checks once, on a probe, that the network is features → pooling → Linear (else CAM is undefined).
        head = as_cam_model(self.network, output_stride=output_stride).classifier.linear
        self.num_loaded_tensors = load_network_weights(self.network, head, pretrained, arch, type(self).__name__,
                                                       allow_partial=allow_partial_init).loaded

    @property
    def adapter(self) -> CAMAdapter:
        """The adapter over ``self.network`` (not a submodule: it holds the network's own modules).
        Rebuilt for a copy of this module, whose network is another object."""
        key, adapter = self.__dict__.get("_adapter", (None, None))
        if key != id(self.network):
            adapter = as_cam_model(self.network, output_stride=self.hparams.output_stride, verify=False)
            self.__dict__["_adapter"] = (id(self.network), adapter)
        return adapter

    @property
    def classifier(self) -> LinearAsConv1x1:
        """The head ``Linear`` as a 1×1 conv: ``weight`` ``[num_classes, K, 1, 1]`` is a view."""
        return self.adapter.classifier

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` → ``[B, K, ⌈H/s⌉, ⌈W/s⌉]`` (K = 1280 for MobileNetV2 and EfficientNet-B0)."""
        return self.adapter.features(x)

    def parameter_groups(self) -> tuple[list[nn.Parameter], Iterable[nn.Parameter]]:
        head = list(self.classifier.linear.parameters())
        ids = {id(p) for p in head}
        return [p for p in self.network.parameters() if id(p) not in ids], head
