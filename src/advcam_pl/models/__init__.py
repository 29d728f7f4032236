"""Backbones and the LightningModules of each stage."""

from advcam_pl.models.resnet import ResNet

__all__ = ["ResNet"]
