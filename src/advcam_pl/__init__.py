"""advcam-pl: AdvCAM (Lee, Kim & Yoon, CVPR 2021) on PyTorch Lightning + Hydra.

Stages (one module each in :mod:`advcam_pl.pipeline`) read the previous stage's files and
write their own, so any stage can be re-run alone. See ``../shared/DESIGN.md`` for the algorithm.
"""

__version__ = "0.1.0"
