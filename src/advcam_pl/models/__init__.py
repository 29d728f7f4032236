"""Backbones and the LightningModules of each stage."""

from advcam_pl.models.cam_classifier import CAMClassifier
from advcam_pl.models.cct import CCT
from advcam_pl.models.resnet import ResNet

__all__ = ["CAMClassifier", "CCT", "ResNet"]
