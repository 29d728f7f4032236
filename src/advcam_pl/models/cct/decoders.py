"""CCT's decoders (official ``models/decoders.py``): one head design for the main decoder and every
auxiliary decoder, each auxiliary decoder = a feature perturbation + its own head.

Head (``upsample(512, 21, upscale=8)``): a 1×1 conv ``C → K`` without bias (kaiming-normal), then
``log2(upscale)`` blocks of 1×1 conv ``K → 4K`` (ICNR-initialised, with bias) → ReLU →
``PixelShuffle(2)``: ``[B, C, h, w]`` → ``[B, K, 8h, 8w]``, the input crop's size for output stride 8.
16,296 parameters for C = 512, K = 21.

⚠ Official quirk (kept; ``final_relu=False`` drops the last block's ReLU): every output passes a
ReLU last, so the "logits" are ≥ 0; softmax, cross-entropy and MSE are taken of these maps.

Auxiliary decoders take ``(z, guide)`` (:class:`~advcam_pl.models.cct.perturbations.Guidance` of the
main decoder's detached prediction on the same batch); :data:`AUX_TYPES` lists them in the order
of the official ``nn.ModuleList``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from advcam_pl.models.cct import perturbations as P


def icnr_(weight: torch.Tensor, scale: int = 2) -> None:
    """ICNR init (Aitken et al. 2017) of a sub-pixel conv ``[r²·K, C, 1, 1]``: output channels
    ``r²j … r²j + r² − 1`` share one kaiming-normal kernel, so the following pixel shuffle starts
    as nearest-neighbour upsampling."""
    out_channels, in_channels, kh, kw = weight.shape
    base = nn.init.kaiming_normal_(torch.zeros(out_channels // scale**2, in_channels, kh, kw))
    with torch.no_grad():
        weight.copy_(base.repeat_interleave(scale**2, dim=0))


class PixelShuffleBlock(nn.Sequential):
    """1×1 conv ``K → 4K`` (ICNR) → ReLU → ``PixelShuffle(2)``: ``[B, K, h, w]`` → ``[B, K, 2h, 2w]``."""

    def __init__(self, channels: int, relu: bool = True):
        conv = nn.Conv2d(channels, channels * 4, kernel_size=1)
        icnr_(conv.weight)
        super().__init__(conv, nn.ReLU(inplace=True) if relu else nn.Identity(), nn.PixelShuffle(2))


class DecoderHead(nn.Sequential):
    """``[B, in_channels, h, w]`` → ``[B, num_classes, upscale·h, upscale·w]`` (see the module doc)."""

    def __init__(self, in_channels: int, num_classes: int, upscale: int = 8, final_relu: bool = True):
        blocks = int(math.log2(upscale))
        if 2**blocks != upscale:
            raise ValueError(f"upscale must be a power of 2, got {upscale}")
        conv = nn.Conv2d(in_channels, num_classes, kernel_size=1, bias=False)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        shuffles = [PixelShuffleBlock(num_classes, relu=final_relu or i < blocks - 1) for i in range(blocks)]
        super().__init__(conv, *shuffles)


class AuxDecoder(nn.Module):
    """A perturbation of ``z`` followed by this decoder's own :class:`DecoderHead`."""

    def __init__(self, in_channels: int, num_classes: int, upscale: int = 8, final_relu: bool = True):
        super().__init__()
        self.head = DecoderHead(in_channels, num_classes, upscale, final_relu)

    def perturb(self, z: torch.Tensor, guide: P.Guidance) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, z: torch.Tensor, guide: P.Guidance) -> torch.Tensor:
        """``z`` ``[B, C, h, w]`` → ``[B, K, upscale·h, upscale·w]``."""
        return self.head(self.perturb(z, guide))


class VATDecoder(AuxDecoder):
    """I-VAT: ``head(z + r_adv)``, ``r_adv`` adversarial to this decoder's own head."""

    def __init__(self, *args, xi: float = 1e-6, eps: float = 2.0, iterations: int = 1,
                 norm_floor: float = 1e-8, **kwargs):  # fmt: skip
        super().__init__(*args, **kwargs)
        self.xi, self.eps, self.iterations, self.norm_floor = xi, eps, iterations, norm_floor

    def perturb(self, z, guide):
        return z + P.vat_perturbation(z, self.head, self.xi, self.eps, self.iterations, self.norm_floor)


class DropOutDecoder(AuxDecoder):
    """DropOut: ``Dropout2d(drop_rate)`` (whole channels per sample; ``spatial=False``: elements)."""

    def __init__(self, *args, drop_rate: float = 0.5, spatial: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.dropout = nn.Dropout2d(drop_rate) if spatial else nn.Dropout(drop_rate)

    def perturb(self, z, guide):
        return self.dropout(z)


class CutOutDecoder(AuxDecoder):
    """G-Cutout: part of each predicted object box erased (:func:`perturbations.guided_cutout`)."""

    def __init__(self, *args, erase: float = 0.4, **kwargs):
        super().__init__(*args, **kwargs)
        self.erase = erase

    def perturb(self, z, guide):
        return P.guided_cutout(z, guide, self.erase)


class ContextMaskDecoder(AuxDecoder):
    """Con-Msk: only the predicted objects' features kept."""

    def perturb(self, z, guide):
        return P.context_mask(z, guide)


class ObjectMaskDecoder(AuxDecoder):
    """Obj-Msk: only the context's features kept."""

    def perturb(self, z, guide):
        return P.object_mask(z, guide)


class FeatureDropDecoder(AuxDecoder):
    """F-Drop: the most activated positions dropped (:func:`perturbations.feature_drop`)."""

    def __init__(self, *args, gamma_range=(0.7, 0.9), per_sample: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.gamma_range, self.per_sample = tuple(gamma_range), per_sample

    def perturb(self, z, guide):
        return P.feature_drop(z, self.gamma_range, self.per_sample)


class FeatureNoiseDecoder(AuxDecoder):
    """F-Noise: multiplicative uniform noise (:func:`perturbations.feature_noise`)."""

    def __init__(self, *args, uniform_range: float = 0.3, per_sample: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.uniform_range, self.per_sample = uniform_range, per_sample

    def perturb(self, z, guide):
        return P.feature_noise(z, self.uniform_range, self.per_sample)


# Config name → class, in the order of the official ModuleList (model.py:64-83).
AUX_TYPES: dict[str, type[AuxDecoder]] = {
    "vat": VATDecoder,
    "dropout": DropOutDecoder,
    "cutout": CutOutDecoder,
    "context_mask": ContextMaskDecoder,
    "object_mask": ObjectMaskDecoder,
    "feature_drop": FeatureDropDecoder,
    "feature_noise": FeatureNoiseDecoder,
}
OFFICIAL_AUX_COUNTS = {"vat": 2, "dropout": 6, "cutout": 6, "context_mask": 2, "object_mask": 2,
                       "feature_drop": 6, "feature_noise": 6}  # fmt: skip


def build_aux_decoders(
    counts: Mapping[str, int],
    in_channels: int,
    num_classes: int,
    upscale: int = 8,
    final_relu: bool = True,
    options: Mapping[str, Mapping] | None = None,
) -> nn.ModuleList:
    """``counts[type]`` decoders of each type, in :data:`AUX_TYPES` order; ``options[type]`` are the
    type's keyword arguments (e.g. ``{"vat": {"xi": 1e-6, "eps": 2.0}}``)."""
    unknown = set(counts) - set(AUX_TYPES)
    if unknown:
        raise ValueError(f"unknown auxiliary decoder type(s) {sorted(unknown)}; expected {list(AUX_TYPES)}")
    options = options or {}
    decoders = []
    for name, cls in AUX_TYPES.items():
        n = int(counts.get(name, 0))
        if n < 0:
            raise ValueError(f"aux decoder count for {name!r} must be >= 0, got {n}")
        kwargs = dict(options.get(name, {}))
        decoders += [cls(in_channels, num_classes, upscale, final_relu, **kwargs) for _ in range(n)]
    return nn.ModuleList(decoders)
