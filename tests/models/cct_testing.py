"""Small CCT builders shared by the CCT tests."""

from __future__ import annotations

from advcam_pl.models.cct import CCT

ONE_OF_EACH = {"vat": 1, "dropout": 1, "cutout": 1, "context_mask": 1, "object_mask": 1,
               "feature_drop": 1, "feature_noise": 1}  # fmt: skip


def tiny_cct(**kwargs) -> CCT:
    """The tiny config's network: ResNet-18 from scratch, PSP 128 channels, one aux decoder per type."""
    return CCT(**{"depth": 18, "pretrained": None, "aux_counts": ONE_OF_EACH, **kwargs})
