"""The CCT network without Lightning: encoder, main decoder, auxiliary decoders (official
``models/model.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from advcam_pl.models.cct.decoders import OFFICIAL_AUX_COUNTS, DecoderHead, build_aux_decoders
from advcam_pl.models.cct.encoder import CCTEncoder
from advcam_pl.models.cct.perturbations import Guidance


def match_size(output: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear (``align_corners=True``, as the official training step) to ``size`` when it differs;
    a no-op for inputs that are multiples of 8."""
    if tuple(output.shape[-2:]) == tuple(size):
        return output
    return F.interpolate(output, size=tuple(size), mode="bilinear", align_corners=True)


class CCTNet(nn.Module):
    """CCT: ``forward(x)`` is the eval path, the main decoder's raw output
    ``[B, K, s⌈H/s⌉, s⌈W/s⌉]`` (``s = output_stride``, 8 official: the heads upsample by ``s``);
    :meth:`unlabelled_outputs` is the training path of an unlabelled/weak batch.

    Args:
        aux_counts: decoders per type (:data:`~advcam_pl.models.cct.decoders.AUX_TYPES`); the
            official 2 VAT, 6 dropout, 6 cutout, 2 context mask, 2 object mask, 6 feature drop,
            6 feature noise by default (K = 30).
        aux_options: keyword arguments per type, e.g. ``{"vat": {"xi": 1e-6, "eps": 2.0}}``.
        cutout_min_points: G-Cutout cuts only contours with more points than this (official 50).
        final_relu: keep the ReLU as the heads' last op (official; outputs ≥ 0).
        Encoder arguments: see :class:`~advcam_pl.models.cct.encoder.CCTEncoder`.
    """

    def __init__(
        self,
        num_classes: int = 21,
        depth: int = 50,
        deep_stem: bool = False,
        pretrained: str | os.PathLike | None = "imagenet",
        psp_bins: Sequence[int] = (1, 2, 3, 6),
        psp_channels: int | None = None,
        output_stride: int = 8,
        final_relu: bool = True,
        aux_counts: Mapping[str, int] | None = None,
        aux_options: Mapping[str, Mapping] | None = None,
        cutout_min_points: int = 50,
    ):
        super().__init__()
        self.encoder = CCTEncoder(depth, deep_stem, pretrained, psp_bins, psp_channels, output_stride)
        channels, upscale = self.encoder.out_channels, output_stride
        self.main_decoder = DecoderHead(channels, num_classes, upscale, final_relu)
        counts = OFFICIAL_AUX_COUNTS if aux_counts is None else aux_counts
        self.aux_decoders = build_aux_decoders(counts, channels, num_classes, upscale, final_relu, aux_options)
        self.cutout_min_points = int(cutout_min_points)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main_decoder(self.encoder(x))

    def unlabelled_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One encoder pass over ``x`` ``[B, 3, H, W]``: the main decoder's output and every auxiliary
        decoder's output on its perturbation of the features, all ``[B, K, H, W]`` (for H, W multiples
        of 8). The perturbations are guided by the main output, detached."""
        z = self.encoder(x)
        main = self.main_decoder(z)
        guide = Guidance(main, self.cutout_min_points)
        size = x.shape[-2:]
        return match_size(main, size), [match_size(decoder(z, guide), size) for decoder in self.aux_decoders]

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """The ResNet (stem + layer1-4): the official optimiser's lr/10 group."""
        return self.encoder.backbone.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """PSP + main decoder + auxiliary decoders: the official optimiser's full-lr group."""
        yield from self.encoder.psp.parameters()
        yield from self.main_decoder.parameters()
        yield from self.aux_decoders.parameters()
