"""CCT (cross-consistency training, Ouali et al., CVPR 2020) for the semi-supervised half:
the network (:mod:`.network`, :mod:`.encoder`, :mod:`.decoders`), its perturbations, losses,
inference and the LightningModule :class:`CCT`."""

from advcam_pl.models.cct.module import CCT, load_cct
from advcam_pl.models.cct.network import CCTNet

__all__ = ["CCT", "CCTNet", "load_cct"]
