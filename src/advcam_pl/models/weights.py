"""Initial backbone weights for every network: torchvision's ImageNet weights, a local file, or nothing.

:func:`load_backbone_weights` is the one loader (CAM classifier, IRN, DeepLab-v2, CCT). It counts the
tensors it copies and refuses a partial load unless asked (``allow_partial``: then a warning with
the count): a silent ``strict=False`` that loads nothing is a known failure of other
implementations. A file may hold torchvision names, a Lightning checkpoint of our modules
(``backbone.*``, CCT's ``net.encoder.backbone.*``; one made for another ResNet depth is an error
naming both), or
kazuto1011/deeplab-pytorch's Caffe-converted names (the ImageNet ResNet-101 that AdvCAM's README
links). Files are read as data only (``weights_only=True``): one with a code payload is refused.

Weights come with the input they were trained on (their *input space*):

- ``"rgb_imagenet"``: RGB in [0, 1], minus ImageNet mean, over ImageNet std — torchvision's
  weights, and what every datamodule here delivers;
- ``"bgr_caffe"``: BGR, 0–255, minus the Caffe mean (B, G, R) = (104.008, 116.669, 122.675), no
  scaling — the Caffe-converted models. :func:`to_input_space` converts a normalised batch.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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

INPUT_SPACES = ("rgb_imagenet", "bgr_caffe")
# Where our modules keep their ResNet: CCT (its LightningModule, its network), then the CAM classifier,
# IRN and DeepLab-v2.
_OUR_BACKBONE_PREFIXES = ("net.encoder.backbone.", "encoder.backbone.", "backbone.")
CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)  # kazuto1011/deeplab-pytorch configs/voc12.yaml IMAGE.MEAN


class WeightsUnavailableError(RuntimeError):
    pass


@dataclass(frozen=True)
class LoadedWeights:
    """What :func:`load_backbone_weights` did: ``loaded`` of ``expected`` backbone tensors copied
    from ``source``, which expects inputs in ``input_space``."""

    loaded: int
    expected: int
    source: str
    input_space: str = "rgb_imagenet"


def imagenet_state_dict(depth: int) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet ResNet-``depth`` state dict (downloaded once into the torch hub cache)."""
    import torchvision.models as tvm

    weights = getattr(tvm, _TORCHVISION_WEIGHTS[depth]).IMAGENET1K_V1
    return fetch_torchvision_weights(weights, f"ResNet-{depth}", f"resnet{depth}")


def fetch_torchvision_weights(weights, label: str, stem: str) -> dict[str, torch.Tensor]:
    """The state dict of a torchvision ``WeightsEnum`` member (from the torch hub cache, else
    downloaded); offline, a :class:`WeightsUnavailableError` that says how to supply the file.
    ``label``: the network's name for the message, ``stem``: the file name it suggests."""
    try:
        return weights.get_state_dict(progress=False, check_hash=False)
    except Exception as err:  # URLError, OSError, ...: no network
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        raise WeightsUnavailableError(
            f"could not fetch torchvision's ImageNet weights for {label} ({err}). Offline, either put "
            f"the file {Path(weights.url).name} into {hub} (torch.hub's cache; set TORCH_HOME to move it), "
            f"or pass a local checkpoint path as `pretrained=/path/to/{stem}.pth` (e.g. "
            f"classifier.module.pretrained=..., irn.module.pretrained=..., model.module.pretrained=...), "
            f"or start from scratch with `pretrained=null`."
        ) from err


def read_weights_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """A ``.pth`` state dict or a Lightning checkpoint → ``(state dict, hyper-parameters)`` (``{}``
    for a plain state dict). Read with ``weights_only=True``: a file holding code is refused with
    :class:`~advcam_pl.errors.UntrustedFileError`, a truncated one with
    :class:`~advcam_pl.errors.CorruptFileError`, each naming the file."""
    from advcam_pl.training.checkpoint import load_checkpoint_file

    obj = load_checkpoint_file(path, "weights file")
    hparams: dict = {}
    if isinstance(obj, dict) and "state_dict" in obj:
        hparams = dict(obj.get("hyper_parameters") or {})
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, expected a state dict")
    return obj, hparams


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth`` file or a Lightning checkpoint (its ``state_dict``); see
    :func:`read_weights_file`."""
    return read_weights_file(path)[0]


# -- kazuto1011/deeplab-pytorch's Caffe names ---------------------------------------------------------

_WRAPPERS = ("module.", "scale.", "base.")
_CAFFE_BLOCK = re.compile(r"^layer(\d)\.block(\d+)\.(reduce|conv3x3|increase|proj)\.(conv|bn)\.(.+)$")
_CAFFE_STEM = re.compile(r"^layer1\.conv1\.(conv|bn)\.(.+)$")
_CAFFE_ASPP = re.compile(r"^aspp\.stages\.c(\d+)\.(weight|bias)$")
_CAFFE_PARTS = {"reduce": ("conv1", "bn1"), "conv3x3": ("conv2", "bn2"), "increase": ("conv3", "bn3"),
                "proj": ("downsample.0", "downsample.1")}


def _strip_wrappers(name: str) -> str:
    for prefix in _WRAPPERS:
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name


def is_caffe_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether ``state_dict`` uses kazuto1011's Caffe-converted ResNet names."""
    names = (_strip_wrappers(k) for k in state_dict)
    return any(_CAFFE_STEM.match(n) or _CAFFE_BLOCK.match(n) for n in names)


def caffe_to_torchvision(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a kazuto1011/deeplab-pytorch ResNet state dict to torchvision names.

    ``layer1.conv1.{conv,bn}`` → ``conv1`` / ``bn1``; ``layer{k}.block{i}.{reduce,conv3x3,increase,proj}``
    → ``layer{k-1}.{i-1}.{conv1,conv2,conv3,downsample}``; ``aspp.stages.c{i}`` → ``aspp.convs.{i}``.
    Wrapper prefixes (``module.``, ``base.``, ``scale.``) are dropped; other names pass unchanged.
    """
    out = {}
    for name, tensor in state_dict.items():
        name = _strip_wrappers(name)
        if m := _CAFFE_STEM.match(name):
            name = f"{'conv1' if m[1] == 'conv' else 'bn1'}.{m[2]}"
        elif m := _CAFFE_BLOCK.match(name):
            conv, bn = _CAFFE_PARTS[m[3]]
            name = f"layer{int(m[1]) - 1}.{int(m[2]) - 1}.{conv if m[4] == 'conv' else bn}.{m[5]}"
        elif m := _CAFFE_ASPP.match(name):
            name = f"aspp.convs.{m[1]}.{m[2]}"
        out[name] = tensor
    return out


def to_input_space(x: torch.Tensor, input_space: str) -> torch.Tensor:
    """``x`` ``[B, 3, H, W]`` ImageNet-normalised RGB (the datamodules' output) → the input that
    weights of ``input_space`` expect (identity for ``"rgb_imagenet"``).

    A zero-padded border (the mean colour after normalisation) becomes ≈ 0 in the Caffe space too,
    as kazuto1011's mean-filled padding does.
    """
    if input_space == "rgb_imagenet":
        return x
    if input_space != "bgr_caffe":
        raise ValueError(f"input_space must be one of {INPUT_SPACES}, got {input_space!r}")
    from advcam_pl.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    def channels(values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)

    rgb = (x * channels(IMAGENET_STD) + channels(IMAGENET_MEAN)) * 255.0
    return rgb.flip(1) - channels(CAFFE_MEAN_BGR)


# -- loading ------------------------------------------------------------------------------------------


def load_matching(module: nn.Module, state_dict: dict[str, torch.Tensor]) -> int:
    """Copy every tensor of ``state_dict`` whose name and shape match a parameter or buffer of
    ``module``; returns how many were copied."""
    own = module.state_dict()
    matched = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(matched, strict=False)
    return len(matched)


def expected_backbone_tensors(module: nn.Module) -> int:
    """Tensors a full ResNet load must fill: everything but BN's ``num_batches_tracked``."""
    return sum(1 for k in module.state_dict() if not k.endswith("num_batches_tracked"))


def _file_weights(path: str, depth: int, owner: str) -> tuple[dict[str, torch.Tensor], str]:
    """A weights file's tensors under torchvision names, and the input space they expect. A
    checkpoint of one of our modules made for another ResNet depth is an error naming both."""
    from advcam_pl.errors import ArchitectureMismatchError

    raw, hparams = read_weights_file(path)
    if "arch" in hparams:
        raise ArchitectureMismatchError(
            f"{owner}: {path} holds a {hparams['arch']} classifier (arch={hparams['arch']!r} in its "
            f"hyper-parameters), not a ResNet-{depth} backbone; initialise {owner} from ImageNet or a ResNet "
            f"file instead (e.g. irn.init_from_cam=false / model.init_from_cam=false with `pretrained`), or "
            f"train the CAM classifier as a ResNet (classifier=resnet50 / resnet18)")
    if "depth" in hparams and int(hparams["depth"]) != int(depth):
        raise ArchitectureMismatchError(
            f"{owner}: {path} holds a ResNet-{hparams['depth']} backbone (depth={hparams['depth']} in its "
            f"hyper-parameters) but this network is configured as ResNet-{depth}; use a checkpoint of the "
            f"same depth or configure depth={hparams['depth']} (e.g. classifier=resnet50 / irn=resnet50)")
    input_space = "bgr_caffe" if is_caffe_layout(raw) else "rgb_imagenet"
    state = caffe_to_torchvision(raw)
    for prefix in _OUR_BACKBONE_PREFIXES:  # a Lightning checkpoint of one of our modules
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, input_space
    return state, input_space


def load_backbone_weights(backbone: nn.Module, pretrained: str | os.PathLike | None, depth: int,
                          owner: str = "backbone",
                          input_spaces: Sequence[str] = ("rgb_imagenet",),
                          allow_partial: bool = False,
                          rename: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
                          ) -> LoadedWeights:
    """Load ``pretrained`` (``"imagenet"``, a file path, or ``None``) into the ResNet ``backbone``.

    Logs ``"<owner>: loaded n / m backbone tensors from <source>"`` and raises unless every backbone
    tensor was filled (names or shapes drifted, or the file is another network's); with
    ``allow_partial`` a partial load (at least one tensor) only warns, with the count.
    ``input_spaces``: the inputs the caller can feed; weights that expect another raise a ``ValueError``.
    ``rename``: maps a file's tensor names (torchvision's, prefixes dropped) to ``backbone``'s where
    its layout differs (CCT's deep stem).
    """
    expected = expected_backbone_tensors(backbone)
    if pretrained is None or str(pretrained).lower() in ("", "none", "null"):
        log.info("%s: backbone randomly initialised (pretrained=None)", owner)
        return LoadedWeights(0, expected, "none")
    if pretrained == "imagenet":
        state, source, input_space = imagenet_state_dict(depth), f"torchvision's ImageNet ResNet-{depth}", "rgb_imagenet"
    else:
        source = os.fspath(pretrained)
        state, input_space = _file_weights(source, depth, owner)
        if rename is not None:
            state = rename(state)
    if input_space not in input_spaces:
        raise ValueError(f"{owner}: {source} holds Caffe-converted weights, which expect {input_space} input; "
                         f"this network feeds {' / '.join(input_spaces)}. Use torchvision-layout weights.")
    n = load_matching(backbone, {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")})
    return checked_load(LoadedWeights(n, expected, source, input_space), owner, f"a ResNet-{depth} backbone",
                        allow_partial)


def checked_load(loaded: LoadedWeights, owner: str, network: str, allow_partial: bool,
                 stacklevel: int = 3) -> LoadedWeights:
    """Log ``"<owner>: loaded n / m backbone tensors from <source>"``; a partial load is an error
    (a warning with ``allow_partial`` and at least one tensor). ``network`` names what the
    weights must fit (``"a ResNet-50 backbone"``)."""
    n, expected = loaded.loaded, loaded.expected
    message = f"{owner}: loaded {n} / {expected} backbone tensors from {loaded.source}"
    log.info("%s (input space %s)", message, loaded.input_space)
    if n != expected:
        reason = "no tensor matched by name and shape" if n == 0 else "names or shapes differ"
        if allow_partial and n > 0:
            warning = (f"{message}: a PARTIAL initialisation ({expected - n} backbone tensors stay random; "
                       f"{reason}), allowed by the allow_partial_init switch")
            log.warning(warning)
            warnings.warn(warning, stacklevel=stacklevel)
            return loaded
        raise RuntimeError(f"{message}: the weights do not fit {network} ({reason}); "
                           "refusing to start from a partial initialisation (allow_partial_init=true "
                           "allows it, with a warning)")
    return loaded
