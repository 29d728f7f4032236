"""Bring your own classifier: adapters to the ``features`` / ``classifier`` interface of AdvCAM.

:func:`~advcam_pl.advcam.adv_climb` and :func:`~advcam_pl.advcam.compute_cam` need a model with

- ``features(x)``: images ``[B, 3, H, W]`` → feature map ``[B, K, h, w]``, and
- ``classifier``: a 1×1 conv whose ``weight`` is ``[C, K, 1, 1]`` (a bias is ignored),

such that the logits are the spatial mean of the class maps ``conv1x1(features(x), W)`` plus a
constant. That holds exactly when the network is ``features → global average pool → Linear``
(dropout, identity and flatten layers in between are the identity in eval mode): pooling and a
linear head commute. :func:`as_cam_model` finds those two parts in

- torchvision's ResNet family (``resnet*``, ``resnext*``, ``wide_resnet*``; head ``fc``), RegNet,
  DenseNet, EfficientNet (v1 and v2) and MobileNetV2 (head ``Dropout → Linear``),
- timm-style models (``forward_features(x) -> [B, K, h, w]`` and ``get_classifier()``),
- a generic pair ``as_cam_model(feature_extractor, linear_head)``,

and wraps them **without copying a weight**: the adapter holds the user's modules, and its
``classifier.weight`` is a ``[C, K, 1, 1]`` view of the head's ``Linear.weight`` ``[C, K]``.
A model that already has ``features`` and a 1×1 conv ``classifier`` (this project's
``CAMClassifier``) is returned as it is.

Where the head is not linear in the pooled features — MobileNetV3 (``Linear → Hardswish →
Dropout → Linear``), ConvNeXt (``LayerNorm2d`` on the pooled vector, whose statistics are those of
the whole image), VGG (an MLP on a 7×7 pool) — the logit is not a spatial mean of per-location
scores, CAM is undefined, and :class:`NonLinearHeadError` says so. For models found by structure
(torchvision, timm-style) a probe forward also checks that the adapter reproduces the model's own
logits, so a subclass whose ``forward`` does something else is caught instead of silently mapped.

Output stride: torchvision's ResNets have output stride 32; the official CAM network has 16.
``as_cam_model(resnet, output_stride=16)`` runs ``layer4`` with stride 1 and dilation 2 in the
blocks after the first — the layer torchvision builds with ``replace_stride_with_dilation=[False,
False, True]`` — through shallow copies of those modules that share every parameter and buffer
with the user's model; the user's ``layer4`` keeps its stride. (The official CAM network instead
trains ``layer4`` at stride 1 without dilation; on a classifier trained at stride 32 the dilated
layer sees the receptive field the weights were trained for.) MobileNetV2 and EfficientNet (stride 32)
take ``output_stride=16`` the same way, as DeepLab runs MobileNetV2: their last strided conv at
stride 1 and every later spatial conv dilated by 2 (:func:`dilated_after_last_stride`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from advcam_pl.advcam.modes import eval_mode

FeatureFn = Callable[[torch.Tensor], torch.Tensor]

# Layers that are the identity on pooled features in eval mode.
_PASS_THROUGH = (nn.Dropout, nn.Identity, nn.Flatten)


class NonLinearHeadError(TypeError):
    """The classifier's head is not linear in the pooled features, so its CAM is undefined."""


class LinearAsConv1x1(nn.Module):
    """A ``Linear(K, C)`` seen as a 1×1 conv: ``weight`` ``[C, K, 1, 1]`` is a view of the
    Linear's ``[C, K]`` parameter (same storage, gradients flow to it), ``bias`` is its bias."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    @property
    def weight(self) -> torch.Tensor:
        return self.linear.weight[:, :, None, None]

    @property
    def bias(self) -> torch.Tensor | None:
        return self.linear.bias

    @property
    def in_channels(self) -> int:
        return self.linear.in_features

    @property
    def out_channels(self) -> int:
        return self.linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, K, h, w]`` → ``[B, C, h, w]``."""
        return F.conv2d(x, self.weight, self.bias)


class CAMAdapter(nn.Module):
    """``features(x) -> [B, K, h, w]`` and a 1×1 ``classifier`` over a user's modules.

    Args:
        backbone: the user's model (or feature extractor); held, never copied, so
            ``train()``/``eval()``/``to()`` and the parameter list reach the user's weights.
        head: the head's ``nn.Linear(K, C)`` or 1×1 ``nn.Conv2d``.
        feature_fn: images → feature map; ``backbone`` itself when ``None``.
        source: what was adapted, for ``repr`` and error messages.

    ``forward(x)`` gives the logits ``[B, C]`` as the spatial mean of the class maps plus the
    head's bias; in eval mode they equal the adapted model's own logits.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, feature_fn: FeatureFn | None = None,
                 source: str = "model"):
        super().__init__()
        self.backbone = backbone
        self.classifier = _as_conv1x1(head, source)
        # Not registered: it is a part of ``backbone`` (or a closure over it), reached through it.
        object.__setattr__(self, "_feature_fn", feature_fn)
        self.source = source

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` → ``[B, K, h, w]``."""
        feats = self._feature_fn(x) if self._feature_fn is not None else self.backbone(x)
        k = self.classifier.weight.shape[1]
        if not isinstance(feats, torch.Tensor) or feats.dim() != 4 or feats.shape[1] != k:
            shape = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
            raise ValueError(
                f"{self.source}: features must be a [B, {k}, h, w] map (K = the head's input size), "
                f"got {shape}; token outputs [B, N, D] and channels-last maps [B, h, w, K] have no "
                f"CAM through this adapter"
            )
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` → logits ``[B, C]``."""
        return self.classifier(self.features(x)).mean(dim=(2, 3))

    def extra_repr(self) -> str:
        return f"source={self.source}"


def _as_conv1x1(head: nn.Module, source: str) -> nn.Module:
    if isinstance(head, nn.Linear):
        return LinearAsConv1x1(head)
    if isinstance(head, nn.Conv2d) and head.kernel_size == (1, 1) and head.groups == 1:
        return head
    raise NonLinearHeadError(f"{source}: the head must be an nn.Linear or a 1×1 nn.Conv2d, got {head!r}")


def _layer_names(layers: Sequence[nn.Module]) -> str:
    return " → ".join(type(m).__name__ for m in layers)


def linear_of_head(layers: Sequence[nn.Module], source: str) -> nn.Linear:
    """The one ``nn.Linear`` of a head applied to pooled features, whose other layers must be
    the identity in eval mode (dropout, identity, flatten); else :class:`NonLinearHeadError`."""
    core = [m for m in layers if not isinstance(m, _PASS_THROUGH)]
    if len(core) == 1 and isinstance(core[0], nn.Linear):
        return core[0]
    why = "it is not linear in the pooled features"
    if any(isinstance(m, nn.LayerNorm) or "Norm" in type(m).__name__ for m in core):
        why = ("it normalises the pooled feature vector, with statistics of the whole image, before "
               "the Linear")
    raise NonLinearHeadError(
        f"CAM is undefined for {source}: its head ({_layer_names(layers)}) follows the global pooling "
        f"and {why}, so a logit is not the spatial mean of per-location class scores. AdvCAM needs "
        f"features → global average pooling → [Dropout →] Linear. Use a model with such a head (e.g. "
        f"ResNet, EfficientNet, MobileNetV2), or train one and pass it as "
        f"as_cam_model(feature_extractor, nn.Linear(K, C))."
    )


# --------------------------------------------------------------------------------------------
# torchvision families
# --------------------------------------------------------------------------------------------


def _resnet_features(model: nn.Module, layer4: nn.Module) -> FeatureFn:
    def features(x: torch.Tensor) -> torch.Tensor:
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        return layer4(model.layer3(model.layer2(model.layer1(x))))

    return features


def _regnet_features(model: nn.Module) -> FeatureFn:
    return lambda x: model.trunk_output(model.stem(x))


def _densenet_features(model: nn.Module) -> FeatureFn:
    return lambda x: F.relu(model.features(x))  # DenseNet.forward applies this ReLU before pooling


def _shared_copy(module: nn.Module, **attrs) -> nn.Module:
    """A shallow copy of ``module`` sharing its parameter and buffer dicts (no weight is copied),
    with its own child dict and the attributes ``attrs`` (stride, dilation, padding) set."""
    twin = copy.copy(module)
    twin._modules = dict(module._modules)
    for name, value in attrs.items():
        setattr(twin, name, value)
    return twin


def _with_convs(module: nn.Module, conv_copy: Callable[[nn.Conv2d], nn.Conv2d]) -> nn.Module:
    """``module`` with each ``nn.Conv2d`` replaced by ``conv_copy(conv)`` (the conv itself or a
    :func:`_shared_copy` of it), through shallow copies of the containers on the way."""
    if isinstance(module, nn.Conv2d):
        return conv_copy(module)
    if not module._modules:
        return module
    twin = _shared_copy(module)
    for name, child in module._modules.items():
        if child is not None:
            twin._modules[name] = _with_convs(child, conv_copy)
    return twin


def _dilated(conv: nn.Conv2d, dilation: int) -> nn.Conv2d:
    k = conv.kernel_size
    return _shared_copy(conv, dilation=(dilation, dilation), padding=tuple(dilation * (s - 1) // 2 for s in k))


def _stride1_copy(block: nn.Module, dilation: int) -> nn.Module:
    """``block`` with every strided conv at stride 1 (``dilation == 1``) or every spatial conv at
    ``dilation`` (padding kept "same"), parameters shared."""

    def convert(conv: nn.Conv2d) -> nn.Conv2d:
        if dilation == 1 and conv.stride != (1, 1):
            return _shared_copy(conv, stride=(1, 1))
        if dilation > 1 and conv.kernel_size != (1, 1):
            return _dilated(conv, dilation)
        return conv

    return _with_convs(block, convert)


def dilated_last_stage(layer: nn.Sequential) -> nn.Sequential:
    """torchvision's ``replace_stride_with_dilation`` applied to one ResNet stage, as shared-weight
    copies: the first block at stride 1 (its own dilation), the others dilated by 2."""
    blocks = list(layer)
    if any(m.dilation != (1, 1) for m in layer.modules() if isinstance(m, nn.Conv2d)):
        raise ValueError("layer4 is already dilated; output_stride=16 expects a stride-32 ResNet")
    if not any(m.stride != (1, 1) for m in blocks[0].modules() if isinstance(m, nn.Conv2d)):
        raise ValueError("layer4 has no stride to remove; is the ResNet already at output stride 16?")
    return nn.Sequential(_stride1_copy(blocks[0], 1), *(_stride1_copy(b, 2) for b in blocks[1:]))


# Families whose ``features`` is a plain stack of conv blocks, the last stride ending the last
# stage: DeepLab's output stride 16 for MobileNetV2 (and the same rule for EfficientNet).
_DILATABLE_FEATURES = ("MobileNetV2", "EfficientNet")


def dilated_after_last_stride(features: nn.Module) -> nn.Module:
    """``features`` at half the output stride, as shared-weight copies: its last strided conv at
    stride 1, every later spatial conv dilated by 2 (padding kept "same") — the rule of
    :func:`dilated_last_stage` (DeepLab's ``output_stride=16``) for a network whose last stage is
    not one module. The convs must run in the order they are registered (true of
    ``nn.Sequential`` stacks such as MobileNetV2's and EfficientNet's ``features``)."""
    convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
    strided = [i for i, m in enumerate(convs) if m.stride != (1, 1)]
    if not strided:
        raise ValueError("the feature extractor has no strided conv to remove")
    if any(m.dilation != (1, 1) for m in convs):
        raise ValueError("the feature extractor is already dilated; output_stride=16 expects it at stride 32")
    last = convs[strided[-1]]
    later = {id(m) for m in convs[strided[-1] + 1:] if m.kernel_size != (1, 1)}
    for m in convs[strided[-1] + 1:]:
        if id(m) in later and m.padding != tuple((k - 1) // 2 for k in m.kernel_size):
            raise ValueError(f"a conv after the last stride is not 'same'-padded ({m}); cannot dilate it")

    def convert(conv: nn.Conv2d) -> nn.Conv2d:
        if conv is last:
            return _shared_copy(conv, stride=(1, 1))
        return _dilated(conv, 2) if id(conv) in later else conv

    return _with_convs(features, convert)


def _torchvision_parts(model: nn.Module, output_stride: int | None) -> tuple[FeatureFn, nn.Module, str]:
    """``(features, linear head, family)`` of a torchvision classifier, or a clear error."""
    name = type(model).__name__
    fc = getattr(model, "fc", None)
    if hasattr(model, "layer4") and isinstance(fc, nn.Module):
        layer4 = model.layer4
        if output_stride == 16:
            layer4 = dilated_last_stage(model.layer4)
        return _resnet_features(model, layer4), linear_of_head([fc], name), name
    dilate = output_stride == 16
    if dilate and not name.startswith(_DILATABLE_FEATURES):
        raise ValueError(f"output_stride=16 is supported for the ResNet family, MobileNetV2 and EfficientNet, "
                         f"not {name}")
    if hasattr(model, "trunk_output") and isinstance(fc, nn.Module):
        return _regnet_features(model), linear_of_head([fc], name), name
    if hasattr(model, "features") and isinstance(getattr(model, "classifier", None), nn.Module):
        head = model.classifier
        layers = list(head) if isinstance(head, nn.Sequential) else [head]
        pool = getattr(model, "avgpool", None)
        if isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size not in (1, (1, 1)):
            raise NonLinearHeadError(
                f"CAM is undefined for {name}: it pools to {pool.output_size}, not to one vector, "
                f"and its head is {_layer_names(layers)}"
            )
        linear = linear_of_head(layers, name)
        if name.startswith("DenseNet"):
            return _densenet_features(model), linear, name
        return (dilated_after_last_stride(model.features) if dilate else model.features), linear, name
    raise TypeError(
        f"as_cam_model does not know {name}: expected a torchvision ResNet/RegNet (fc), "
        f"EfficientNet/MobileNetV2/DenseNet (features + classifier), a timm-style model "
        f"(forward_features + get_classifier), a model with features() and a 1×1 conv classifier, "
        f"or call as_cam_model(feature_extractor, linear_head)"
    )


# --------------------------------------------------------------------------------------------
# the public function
# --------------------------------------------------------------------------------------------


def has_cam_interface(model: nn.Module) -> bool:
    """``features`` callable and ``classifier.weight`` of shape ``[C, K, 1, 1]``."""
    weight = getattr(getattr(model, "classifier", None), "weight", None)
    return (callable(getattr(model, "features", None)) and isinstance(weight, torch.Tensor)
            and weight.dim() == 4 and weight.shape[-2:] == (1, 1))


def check_logits(adapter: CAMAdapter, model: nn.Module, probe_size: Sequence[int] = (64, 64),
                 rtol: float = 1e-3) -> None:
    """Raise :class:`NonLinearHeadError` unless ``adapter(x)`` equals ``model(x)`` on a random
    probe ``x [2, 3, *probe_size]`` in eval mode (the logits are the spatial mean of the maps)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((2, 3, *probe_size), generator=gen).to(device=device, dtype=dtype)
    with torch.no_grad(), eval_mode(model), eval_mode(adapter):
        expected = model(x)
        got = adapter(x)
    if not isinstance(expected, torch.Tensor) or expected.shape != got.shape:
        shape = tuple(expected.shape) if isinstance(expected, torch.Tensor) else type(expected).__name__
        raise NonLinearHeadError(f"{adapter.source}: model(x) gave {shape}, the adapter's logits {tuple(got.shape)}")
    err = float((got - expected).abs().max())
    scale = float(expected.abs().max().clamp_min(1e-6))
    if err > rtol * scale:
        raise NonLinearHeadError(
            f"CAM is undefined for {adapter.source}: the spatial mean of its class maps plus the bias "
            f"does not reproduce its logits (max |Δ| = {err:.3g} for logits up to {scale:.3g}), so its "
            f"forward is not features → global average pooling → Linear. Pass the right parts as "
            f"as_cam_model(feature_extractor, linear_head), or verify=False if you know better."
        )


def as_cam_model(
    model: nn.Module | FeatureFn,
    head: nn.Module | None = None,
    *,
    output_stride: int | None = None,
    verify: bool = True,
    probe_size: Sequence[int] = (64, 64),
) -> nn.Module:
    """Adapt a classifier to ``features(x) -> [B, K, h, w]`` + a 1×1 ``classifier`` for AdvCAM.

        from advcam_pl.advcam import adv_climb
        from advcam_pl.advcam.adapters import as_cam_model
        result = adv_climb(as_cam_model(torchvision.models.resnet50(weights=...)), image, [11, 14])

    Args:
        model: a torchvision ResNet/RegNet/DenseNet/EfficientNet/MobileNetV2, a timm-style
            model (``forward_features`` + ``get_classifier()``), a model that already has
            ``features`` and a 1×1 conv ``classifier`` (returned unchanged), or — with ``head`` —
            a feature extractor (module or callable) giving ``[B, K, h, w]``.
        head: the linear head of a generic pair: ``nn.Linear(K, C)``, a 1×1 ``nn.Conv2d``, or a
            ``Sequential`` of dropout/flatten/identity layers and one Linear.
        output_stride: ``16`` runs a torchvision ResNet's ``layer4`` at stride 1 with dilation 2,
            or MobileNetV2's / EfficientNet's last strided conv at stride 1 and the later convs
            dilated by 2 (shared-weight copies; the user's model is not changed). ``None``/``32``:
            as built.
        verify: for models found by structure, check on a random probe that the adapter's
            logits (spatial mean of the maps + bias) equal the model's own.
        probe_size: ``(H, W)`` of the probe; large enough for a feature map of at least 2×2.

    Returns:
        :class:`CAMAdapter` (or ``model`` itself if it already has the interface).

    Raises:
        NonLinearHeadError: the head is not linear in the pooled features (CAM undefined).
        TypeError: an unknown kind of model.
    """
    if output_stride not in (None, 16, 32):
        raise ValueError(f"output_stride must be None, 16 or 32, got {output_stride}")
    if head is not None:
        if isinstance(head, nn.Sequential):
            head = linear_of_head(list(head), "the given head")
        extractor = model if isinstance(model, nn.Module) else None
        fn = None if isinstance(model, nn.Module) else model
        if extractor is None and not callable(fn):
            raise TypeError(f"the feature extractor must be an nn.Module or a callable, got {type(model).__name__}")
        return CAMAdapter(extractor if extractor is not None else nn.Identity(), head, fn,
                          source=f"{type(model).__name__} + {type(head).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"as_cam_model needs an nn.Module (or a feature extractor and a head), got {type(model).__name__}")
    if isinstance(model, CAMAdapter) or has_cam_interface(model):
        if output_stride == 16:
            raise ValueError("output_stride applies to torchvision classifiers; this model already has features()")
        return model

    name = type(model).__name__
    if callable(getattr(model, "forward_features", None)) and callable(getattr(model, "get_classifier", None)):
        if output_stride == 16:
            raise ValueError(f"output_stride=16 is supported for torchvision ResNets, not {name}")
        classifier = model.get_classifier()
        if isinstance(classifier, nn.Identity):
            raise TypeError(f"{name}.get_classifier() is an Identity (num_classes=0): there is no head to map")
        layers = list(classifier) if isinstance(classifier, nn.Sequential) else [classifier]
        if not (len(layers) == 1 and isinstance(layers[0], nn.Conv2d)):
            classifier = linear_of_head(layers, name)
        adapter = CAMAdapter(model, classifier, model.forward_features, source=name)
        verify_against = adapter
    else:
        features, linear, family = _torchvision_parts(model, output_stride)
        adapter = CAMAdapter(model, linear, features, source=family)
        verify_against = (adapter if output_stride != 16
                          else CAMAdapter(model, linear, _torchvision_parts(model, None)[0], source=family))
    if verify:
        check_logits(verify_against, model, probe_size)
    return adapter
