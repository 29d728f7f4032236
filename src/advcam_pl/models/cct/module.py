"""CCT (Ouali et al., CVPR 2020) as a LightningModule, as AdvCAM trains it on its pseudo masks.

Per iteration a labelled batch ``(x_l, y_l)`` and an unlabelled/weak batch ``(x_u, y_w)`` go through
two separate encoder passes (BN statistics per batch of 10, as the official code; never
concatenate them). The loss is ``L_s + w_u(t)·L_u + w_w(t)·L_w`` (:mod:`.losses`); the optimiser is
SGD (momentum 0.9, weight decay 1e-4 on every parameter) with two groups — PSP + decoders at
``lr``, the ResNet at ``lr · backbone_lr_mult`` (1/10) — and poly decay ``(1 − k/N)^0.9`` per step.

``weak_labels`` says what the unlabelled batch's labels are: ``sem_seg`` (the weak chain's pseudo
masks, AdvCAM's setting), ``ir_label`` (IR labels with their 255 band, CCT's own label type) — both
train ``L_w`` — or ``none`` (no ``L_w``: CCT with consistency only, the paper's CCT baseline).

Official quirks kept as defaults, each with its switch:

1. the decoder heads end with a ReLU, so outputs are ≥ 0 (``final_relu``);
2. the weak labels train only the auxiliary decoders, never the main one (``weak_loss_on_main``);
3. ``L_u`` is ``F.mse_loss`` averaged over classes too, i.e. divided by 21 (``mse_reduction``);
4. F-Noise draws one noise tensor and F-Drop one γ per batch, shared by its samples
   (``shared_batch_draws``);
5. G-Cutout cuts only objects whose OpenCV-simplified contour has > 50 points: never rectangles
   (``cutout_min_points``); its box is 0.4 × 0.4 of the object's box;
6. VAT's ``xi = 1e-6`` leaves the power iteration mostly float32 rounding (``xi``), and its
   gradient (norm ~3e-11) normalised as ``g / (‖g‖ + 1e-8)`` makes ``‖r_adv‖`` ~0.3 % of ``eps``:
   VAT barely perturbs (``vat_norm_floor=0`` gives ``‖r_adv‖ = eps``);
7. multi-scale inference averages raw outputs, not probabilities (``test_average``);
8. ramp-up length ``int(ramp_up · epochs)`` whole epochs (``rampup_steps`` overrides it).

Departures that cannot be switched off here: the backbone's default initialisation is torchvision's
ImageNet ResNet (7×7 stem), since CCT's deep-stem weights cannot be downloaded here (``deep_stem`` +
a local file restores them); VAT uses ``torch.autograd.grad`` instead of ``.backward()``.

Batches: train ``{"labelled": {"image": [B, 3, h, w], "label": int64 [B, h, w]}, "weak": {"image":
[B', 3, h, w], "label": int64 [B', h, w]}}`` (h, w multiples of 8; the weak ``label`` is unused when
``weak_labels=none``); val ``{"image": [1, 3, H, W], "label": [1, H, W]}`` (full images);
predict ``{"image": [1, 3, H, W]}`` → softmax ``[1, K, H, W]`` of the multi-scale + flip outputs (the
input of the dense CRF in ``eval_semi``; softmax before the CRF is our assumption, CCT has no CRF).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence

import pytorch_lightning as pl
import torch

from advcam_pl.evaluation.metric import MeanIoU
from advcam_pl.models.cct.inference import multi_scale_predict, single_scale_predict
from advcam_pl.models.cct.losses import (
    loss_weights,
    rampup_length,
    supervised_loss,
    unsupervised_loss,
    weak_loss,
)
from advcam_pl.models.cct.network import CCTNet, match_size
from advcam_pl.training.schedule import poly_schedule, schedule_length

log = logging.getLogger(__name__)

WEAK_LABEL_MODES = ("sem_seg", "ir_label", "none")


class CCT(pl.LightningModule):
    """See the module docstring; every argument is a hyper-parameter of ``conf/semi/cct.yaml``.

    Network: ``num_classes, depth, deep_stem, pretrained, psp_bins, psp_channels, output_stride, final_relu``.
    Auxiliary decoders: ``aux_counts`` (per type, official K = 30), ``xi, eps, vat_iterations, vat_norm_floor`` (VAT),
    ``drop_rate, spatial_dropout`` (DropOut), ``erase, cutout_min_points`` (G-Cutout),
    ``feature_drop_range`` (F-Drop γ), ``uniform_range`` (F-Noise), ``shared_batch_draws``.
    Losses: ``weak_labels, weak_loss_on_main, supervised_w, softmax_temp, unsupervised_w,
    weakly_loss_w, mse_reduction, ramp_up, rampup_steps``.
    Optimiser: ``lr, backbone_lr_mult, momentum, weight_decay, poly_power, max_steps`` (poly length;
    ``None``: the fit's optimiser steps, :func:`~advcam_pl.training.schedule.schedule_length`).
    Test time: ``test_scales, test_flip, test_average``.
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
        xi: float = 1e-6,
        eps: float = 2.0,
        vat_iterations: int = 1,
        vat_norm_floor: float = 1e-8,
        drop_rate: float = 0.5,
        spatial_dropout: bool = True,
        erase: float = 0.4,
        cutout_min_points: int = 50,
        feature_drop_range: Sequence[float] = (0.7, 0.9),
        uniform_range: float = 0.3,
        shared_batch_draws: bool = True,
        weak_labels: str = "sem_seg",
        weak_loss_on_main: bool = False,
        supervised_w: float = 1.0,
        softmax_temp: float = 1.0,
        unsupervised_w: float = 30.0,
        weakly_loss_w: float = 0.4,
        mse_reduction: str = "mean",
        ramp_up: float = 0.1,
        rampup_steps: int | None = None,
        lr: float = 1e-2,
        backbone_lr_mult: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        poly_power: float = 0.9,
        max_steps: int | None = None,
        test_scales: Sequence[float] = (0.5, 0.75, 1.0, 1.25, 1.5),
        test_flip: bool = True,
        test_average: str = "raw",
    ):
        super().__init__()
        if weak_labels not in WEAK_LABEL_MODES:
            raise ValueError(f"weak_labels must be one of {WEAK_LABEL_MODES}, got {weak_labels!r}")
        if mse_reduction not in ("mean", "sum_classes"):
            raise ValueError(f"mse_reduction must be 'mean' or 'sum_classes', got {mse_reduction!r}")
        self.save_hyperparameters()
        per_sample = not shared_batch_draws
        options = {
            "vat": {"xi": xi, "eps": eps, "iterations": vat_iterations, "norm_floor": vat_norm_floor},
            "dropout": {"drop_rate": drop_rate, "spatial": spatial_dropout},
            "cutout": {"erase": erase},
            "feature_drop": {"gamma_range": tuple(feature_drop_range), "per_sample": per_sample},
            "feature_noise": {"uniform_range": uniform_range, "per_sample": per_sample},
        }
        self.net = CCTNet(
            num_classes, depth, deep_stem, pretrained, tuple(psp_bins), psp_channels, output_stride,
            final_relu=final_relu, aux_counts=None if aux_counts is None else dict(aux_counts),
            aux_options=options, cutout_min_points=cutout_min_points,
        )  # fmt: skip
        if len(self.net.aux_decoders) == 0:
            raise ValueError("CCT needs at least one auxiliary decoder (aux_counts are all 0)")
        self._rampup_steps: int | None = rampup_steps
        self.val_miou = MeanIoU(num_classes)

    @property
    def output_stride(self) -> int:
        return self.net.encoder.output_stride

    @property
    def use_weak_labels(self) -> bool:
        return self.hparams.weak_labels != "none"

    # -- networks ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` → main decoder output ``[B, K, s⌈H/s⌉, s⌈W/s⌉]`` (``s = output_stride``; raw, ≥ 0
        by default)."""
        return self.net(x)

    def predict_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Multi-scale + flip outputs ``[B, K, H, W]`` (:func:`~.inference.multi_scale_predict`)."""
        hp = self.hparams
        return multi_scale_predict(self.net, image, tuple(hp.test_scales), hp.test_flip, self.output_stride,
                                   hp.test_average)

    # -- losses -----------------------------------------------------------------------------------
    @property
    def rampup_steps(self) -> int:
        """``R`` of the ramp-up: ``int(ramp_up · epochs) · iters_per_epoch`` from the trainer (one epoch
        = one pass over the unlabelled/weak list), unless ``rampup_steps`` was given."""
        if self._rampup_steps is None:
            trainer = self.trainer
            per_epoch = trainer.num_training_batches
            if not math.isfinite(per_epoch) or per_epoch <= 0:
                raise ValueError("the ramp-up needs a finite number of training batches per epoch")
            epochs = trainer.max_epochs
            if epochs is None or epochs <= 0:
                epochs = math.ceil(trainer.max_steps / per_epoch)
            self._rampup_steps = rampup_length(self.hparams.ramp_up, epochs, int(per_epoch))
            log.info("CCT ramp-up over %d iterations (%d per epoch)", self._rampup_steps, per_epoch)
        return self._rampup_steps

    def compute_losses(
        self,
        x_l: torch.Tensor,
        y_l: torch.Tensor,
        x_u: torch.Tensor,
        y_w: torch.Tensor | None,
        step: int,
    ) -> dict[str, torch.Tensor]:
        """All loss terms at iteration ``step``: ``loss`` (the total), ``loss_sup``, ``loss_unsup``,
        ``loss_weak`` (and ``loss_weak_main``) unweighted, ``w_u``, ``w_w``.

        ``x_l`` ``[B, 3, h, w]`` with labels ``y_l`` ``[B, h, w]``; ``x_u`` ``[B', 3, h', w']`` with weak
        labels ``y_w`` ``[B', h', w']`` (``None`` when ``weak_labels=none``); 255 = ignore.
        """
        hp = self.hparams
        main_l = match_size(self.net(x_l), x_l.shape[-2:])
        loss_sup = supervised_loss(main_l, y_l, hp.softmax_temp)
        main_u, aux_u = self.net.unlabelled_outputs(x_u)
        loss_unsup = unsupervised_loss(aux_u, main_u, hp.mse_reduction)
        w_u, w_w = loss_weights(step, self.rampup_steps, hp.unsupervised_w, hp.weakly_loss_w)
        total = hp.supervised_w * loss_sup + w_u * loss_unsup
        out = {"loss_sup": loss_sup, "loss_unsup": loss_unsup}
        if self.use_weak_labels:
            if y_w is None:
                raise ValueError(f"weak_labels={hp.weak_labels} needs the weak batch's labels")
            out["loss_weak"] = weak_loss(aux_u, y_w)
            total = total + w_w * out["loss_weak"]
            if hp.weak_loss_on_main:
                out["loss_weak_main"] = weak_loss([main_u], y_w)
                total = total + w_w * out["loss_weak_main"]
        out.update(loss=total, w_u=torch.tensor(w_u), w_w=torch.tensor(w_w))
        return out

    # -- Lightning hooks --------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        log.info("CCT: backbone from %s; %d auxiliary decoders; weak labels: %s",
                 self.net.encoder.weights_source, len(self.net.aux_decoders), self.hparams.weak_labels)  # fmt: skip

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        labelled, weak = batch["labelled"], batch["weak"]
        y_w = weak.get("label") if self.use_weak_labels else None
        losses = self.compute_losses(labelled["image"], labelled["label"], weak["image"], y_w, self.global_step)
        batch_size = labelled["image"].shape[0]
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=batch_size)
        for name, value in losses.items():
            if name != "loss":
                self.log(f"train/{name}", value, batch_size=batch_size)
        return losses["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Single scale on the full image (padded to a multiple of the output stride), main decoder only."""
        self.val_miou.update(single_scale_predict(self.net, batch["image"], self.output_stride).argmax(1), batch["label"])
        self.log("val/miou", self.val_miou, batch_size=batch["image"].shape[0])

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        with torch.no_grad():
            return self.predict_logits(batch["image"]).softmax(1)

    def param_groups(self) -> list[dict]:
        """The official two groups: PSP + decoders at ``lr``, the ResNet at ``lr · backbone_lr_mult``."""
        hp = self.hparams
        heads = [p for p in self.net.head_parameters() if p.requires_grad]
        backbone = [p for p in self.net.backbone_parameters() if p.requires_grad]
        return [
            {"params": heads, "lr": hp.lr, "name": "heads"},
            {"params": backbone, "lr": hp.lr * hp.backbone_lr_mult, "name": "backbone"},
        ]

    def configure_optimizers(self):
        """SGD + poly decay every step (official ``Poly`` scheduler, stepped per iteration) over
        ``max_steps`` or the fit's optimiser steps (epochs × iterations per epoch)."""
        hp = self.hparams
        optimizer = torch.optim.SGD(
            self.param_groups(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
        )
        return {"optimizer": optimizer, "lr_scheduler": poly_schedule(optimizer, schedule_length(self), hp.poly_power)}


def load_cct(checkpoint: str | os.PathLike, map_location: str = "cpu", expected: dict | None = None,
             **overrides) -> CCT:
    """A trained CCT from our Lightning checkpoint (never re-fetches the initial weights), read as data
    only; its hyper-parameters must match ``expected`` (e.g. the configured ``depth``) and its weights
    must be finite (:func:`advcam_pl.training.checkpoint.load_trained`). ``overrides`` replace
    hyper-parameters, e.g. the test-time ``test_scales``."""
    from advcam_pl.training.checkpoint import load_trained

    model = load_trained(CCT, checkpoint, what="CCT checkpoint", remedy="run stage train_semi first",
                         expected=expected, configured_by="semi.module", pretrained=None, **overrides)
    return model.to(map_location)
