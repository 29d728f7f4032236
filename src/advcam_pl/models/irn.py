"""IRN (Ahn, Cho & Kwak, CVPR 2019): class boundaries and displacements from IR labels.

A frozen ResNet (strides 2, 2, 2, 1) feeds two trainable branches on its five taps
(``net/resnet50_irn.py``):

- edge branch: each tap → 1×1 conv to 32 channels, GroupNorm(4), taps of stride 8/16 upsampled to
  stride 4, ReLU; concatenated (160 ch) → 1×1 conv → boundary logit B ``[B, 1, H/4, W/4]``;
- displacement branch: taps 1–2 → 64/128 ch at stride 4, taps 3–5 → 256 ch at stride 8, fused
  (768 → 256, ×2), fused with taps 1–2 (448 → 256) → 2-channel displacement field ``[B, 2, H/4, W/4]``.

Training (``step/train_irn.py``): pairs within ``radius`` (10) on the stride-4 grid, affinity
``1 − max B`` on the pair's path; affinity loss over confident pairs of the IR labels
(background-positive, foreground-positive, negative) and displacement loss (foreground pairs: the
displacement difference should equal the pair's offset; background pairs: zero). Only the branch
widths' *inputs* follow the backbone's channels, so ResNet-18 works for tests and the demo.

Optimiser, as IRN's ``PolyOptimizer``: ``torch.optim.SGD(params, lr, weight_decay)`` passes the
weight decay *positionally* into SGD's ``momentum`` slot, so IRN trains with momentum 1e-4
(effectively none) and weight decay 1e-4 (set per parameter group); the poly power is 0.9 (the
PolyOptimizer's own ``momentum`` argument), applied every step (:mod:`advcam_pl.training.schedule`).
``momentum: 1e-4`` in the config reproduces that.

After training the mean displacement over the inference images (top-left crops) is stored in
``mean_shift.running_mean`` and subtracted at inference (only instance segmentation uses it).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from advcam_pl.models.resnet import ResNet, set_requires_grad
from advcam_pl.models.weights import load_backbone_weights
from advcam_pl.refine.indexing import PathIndex, cached_path_index, edge_to_affinity
from advcam_pl.training.schedule import poly_schedule, schedule_length


class MeanShift(nn.Module):
    """Subtracts a stored mean displacement ``[2]`` at inference; the identity while training."""

    def __init__(self, num_features: int = 2):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x
        return x - self.running_mean.view(1, -1, 1, 1)


def _branch(in_ch: int, out_ch: int, groups: int, upsample: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.GroupNorm(groups, out_ch)]
    if upsample > 1:
        layers.append(nn.Upsample(scale_factor=upsample, mode="bilinear", align_corners=False))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def irn_loss(
    aff: torch.Tensor,
    pair_disp: torch.Tensor,
    disp_target: torch.Tensor,
    bg_pos: torch.Tensor,
    fg_pos: torch.Tensor,
    neg: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """IRN's losses (``step/train_irn.py``).

    Args:
        aff: ``[B, D, N]`` pair affinities in [0, 1].
        pair_disp: ``[B, 2, D, N]`` displacement differences ``δ(src) − δ(dst)``.
        disp_target: ``[1, 2, D, 1]`` pair offsets ``(dy, dx)``.
        bg_pos, fg_pos, neg: ``[B, D, N]`` 0/1 pair labels.
    Returns:
        ``pos_aff`` = (bg-pos + fg-pos)/2 of −log a, ``neg_aff`` of −log(1 − a), ``dp_fg``
        = mean |δ − offset| over fg-pos pairs, ``dp_bg`` = mean |δ| over bg-pos pairs (each over both
        coordinates), and ``loss`` = (pos_aff + neg_aff)/2 + (dp_fg + dp_bg)/2.
    """
    eps = 1e-5
    pos_term = -torch.log(aff + eps)
    neg_term = -torch.log(1.0 + eps - aff)
    bg_pos_aff = (bg_pos * pos_term).sum() / (bg_pos.sum() + eps)
    fg_pos_aff = (fg_pos * pos_term).sum() / (fg_pos.sum() + eps)
    pos_aff = bg_pos_aff / 2 + fg_pos_aff / 2
    neg_aff = (neg * neg_term).sum() / (neg.sum() + eps)
    dp_fg = ((pair_disp - disp_target).abs() * fg_pos.unsqueeze(1)).sum() / (2 * fg_pos.sum() + eps)
    dp_bg = (pair_disp.abs() * bg_pos.unsqueeze(1)).sum() / (2 * bg_pos.sum() + eps)
    loss = (pos_aff + neg_aff) / 2 + (dp_fg + dp_bg) / 2
    return {"loss": loss, "pos_aff": pos_aff, "neg_aff": neg_aff, "dp_fg": dp_fg, "dp_bg": dp_bg}


class IRN(pl.LightningModule):
    """Inter-pixel relation network.

    Args:
        depth: backbone ResNet depth (50 official; 18 for tests and the demo).
        pretrained: where the frozen backbone's weights come from (``"imagenet"``, a path, None);
            read by :meth:`init_backbone`, which the ``train_irn`` stage calls (construction and
            ``load_from_checkpoint`` never fetch weights).
        radius: pair radius on the stride-4 grid during training (IRN: 10).
        edge_channels: width of each edge tap (32).
        dp_width: width of the displacement branch's stride-8 layers (256; the stride-4 taps get
            dp_width/4 and dp_width/2, as IRN's 64/128). Must be a multiple of 64.
        lr: edge-branch learning rate (0.1); the displacement branch gets ``lr · dp_lr_mult`` (1.0).
        weight_decay, momentum: SGD settings (see the module docstring).
        poly_power, poly_interval: the poly schedule (IRN: 0.9, decayed every step).
        max_steps: poly schedule length; None → the trainer's estimated stepping batches.
        allow_partial_init: :meth:`init_backbone` accepts weights that fill only some backbone
            tensors (a warning gives the count); off: an error.
    """

    def __init__(
        self,
        depth: int = 50,
        pretrained: str | None = "imagenet",
        radius: int = 10,
        edge_channels: int = 32,
        dp_width: int = 256,
        lr: float = 0.1,
        dp_lr_mult: float = 10.0,
        weight_decay: float = 1e-4,
        momentum: float = 1e-4,
        poly_power: float = 0.9,
        poly_interval: int = 1,
        max_steps: int | None = None,
        allow_partial_init: bool = False,
    ):
        super().__init__()
        if dp_width % 64:
            raise ValueError(f"dp_width must be a multiple of 64, got {dp_width}")
        self.save_hyperparameters()
        self.backbone = ResNet(depth, strides=(2, 2, 2, 1))
        set_requires_grad(self.backbone, False)
        c0, c1, c2, c3, c4 = self.backbone.out_channels
        e = edge_channels
        # Boundary branch: every tap to stride 4 (stride-8 ×2, stride-16 ×4).
        self.fc_edge1 = _branch(c0, e, 4)
        self.fc_edge2 = _branch(c1, e, 4)
        self.fc_edge3 = _branch(c2, e, 4, upsample=2)
        self.fc_edge4 = _branch(c3, e, 4, upsample=4)
        self.fc_edge5 = _branch(c4, e, 4, upsample=4)
        self.fc_edge6 = nn.Conv2d(5 * e, 1, 1, bias=True)
        # Displacement branch: deep taps fused at stride 8, then with the shallow taps at stride 4.
        w = dp_width
        self.fc_dp1 = _branch(c0, w // 4, 8)
        self.fc_dp2 = _branch(c1, w // 2, 16)
        self.fc_dp3 = _branch(c2, w, 16)
        self.fc_dp4 = _branch(c3, w, 16, upsample=2)
        self.fc_dp5 = _branch(c4, w, 16, upsample=2)
        self.fc_dp6 = _branch(3 * w, w, 16, upsample=2)
        self.fc_dp7 = nn.Sequential(
            nn.Conv2d(w // 4 + w // 2 + w, w, 1, bias=False),
            nn.GroupNorm(16, w),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, 2, 1, bias=False),
        )
        self.mean_shift = MeanShift(2)
        self.edge_layers = nn.ModuleList(
            [self.fc_edge1, self.fc_edge2, self.fc_edge3, self.fc_edge4, self.fc_edge5, self.fc_edge6])
        self.dp_layers = nn.ModuleList(
            [self.fc_dp1, self.fc_dp2, self.fc_dp3, self.fc_dp4, self.fc_dp5, self.fc_dp6, self.fc_dp7])
        self._device_paths: dict = {}

    # -- weights ---------------------------------------------------------------------------------
    def init_backbone(self, pretrained: str | None = "__hparams__") -> int:
        """Load the frozen backbone's weights: ``"imagenet"``, a ``.pth`` / Lightning checkpoint
        (e.g. the CAM classifier's: its ``backbone.*`` tensors), or None. Returns tensors loaded
        (every backbone tensor, or it raises)."""
        if pretrained == "__hparams__":
            pretrained = self.hparams.pretrained
        return load_backbone_weights(self.backbone, pretrained, self.hparams.depth, "IRN",
                                     allow_partial=bool(self.hparams.get("allow_partial_init", False))).loaded

    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        return list(self.edge_layers.parameters()), list(self.dp_layers.parameters())

    # -- forward ---------------------------------------------------------------------------------
    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The frozen backbone's five taps (no gradient)."""
        with torch.no_grad():
            return [t.detach() for t in self.backbone(x)]

    def edge_logits(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """Taps → boundary logits ``[B, 1, h, w]`` (stride 4)."""
        x1, x2, x3, x4, x5 = taps
        e1 = self.fc_edge1(x1)
        e2 = self.fc_edge2(x2)
        h, w = e2.shape[-2:]
        e3 = self.fc_edge3(x3)[..., :h, :w]
        e4 = self.fc_edge4(x4)[..., :h, :w]
        e5 = self.fc_edge5(x5)[..., :h, :w]
        return self.fc_edge6(torch.cat([e1, e2, e3, e4, e5], dim=1))

    def displacement_raw(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """Taps → displacement field ``[B, 2, h, w]`` before the mean shift."""
        x1, x2, x3, x4, x5 = taps
        d1 = self.fc_dp1(x1)
        d2 = self.fc_dp2(x2)
        d3 = self.fc_dp3(x3)
        d4 = self.fc_dp4(x4)[..., : d3.shape[2], : d3.shape[3]]
        d5 = self.fc_dp5(x5)[..., : d3.shape[2], : d3.shape[3]]
        d_up = self.fc_dp6(torch.cat([d3, d4, d5], dim=1))[..., : d2.shape[2], : d2.shape[3]]
        return self.fc_dp7(torch.cat([d1, d2, d_up], dim=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 3, H, W]`` normalised images → boundary logits ``[B, 1, ⌈H/4⌉, ⌈W/4⌉]`` and
        displacements ``[B, 2, ⌈H/4⌉, ⌈W/4⌉]`` (mean-shifted in eval mode)."""
        taps = self.taps(x)
        return self.edge_logits(taps), self.mean_shift(self.displacement_raw(taps))

    @torch.no_grad()
    def edge_map(self, image: torch.Tensor, pad_to: int | None = None) -> torch.Tensor:
        """Boundary probabilities ``[⌈H/4⌉, ⌈W/4⌉]`` of one normalised image ``[3, H, W]``.

        As IRN's ``EdgeDisplacement``: the image and its mirror, zero-padded bottom/right to
        ``pad_to`` (the training crop; GroupNorm statistics then match training), one batch;
        ``sigmoid(logit/2 + flip(logit_mirror)/2)``.
        """
        height, width = image.shape[-2:]
        feat_h, feat_w = (height - 1) // 4 + 1, (width - 1) // 4 + 1
        x = torch.stack([image, image.flip(-1)])
        if pad_to:
            x = F.pad(x, (0, max(0, pad_to - width), 0, max(0, pad_to - height)))
        logits = self.edge_logits(self.taps(x))[:, 0, :feat_h, :feat_w]
        return torch.sigmoid(logits[0] / 2 + logits[1].flip(-1) / 2)

    # -- training --------------------------------------------------------------------------------
    def path_index(self, height: int, width: int) -> PathIndex:
        return cached_path_index(int(self.hparams.radius), height, width)

    def _paths_on_device(self, height: int, width: int) -> dict[str, object]:
        """Path / pair indices for an ``h × w`` grid on this module's device (built once)."""
        key = (height, width, str(self.device))
        if key not in self._device_paths:
            pi = self.path_index(height, width)
            self._device_paths[key] = {
                "path_indices": [torch.from_numpy(p).to(self.device) for p in pi.path_indices],
                "src": torch.from_numpy(pi.src_indices).to(self.device),
                "dst": torch.from_numpy(pi.dst_indices).to(self.device),
                "target": pi.displacement_target().to(self.device),
                "index": pi,
            }
        return self._device_paths[key]

    def losses(self, image: torch.Tensor | None, label: torch.Tensor,
               taps: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """IRN losses of a batch: images ``[B, 3, S, S]`` (or their precomputed frozen ``taps``),
        IR labels at stride 4 ``[B, S/4, S/4]``."""
        from advcam_pl.data.affinity import affinity_labels

        taps = self.taps(image) if taps is None else taps
        edge = torch.sigmoid(self.edge_logits(taps))[:, 0]
        disp = self.mean_shift(self.displacement_raw(taps))
        height, width = edge.shape[-2:]
        if tuple(label.shape[-2:]) != (height, width):
            raise ValueError(f"label {tuple(label.shape)} does not match the stride-4 grid {(height, width)}")
        paths = self._paths_on_device(height, width)
        aff = edge_to_affinity(edge, paths["path_indices"])
        pair_disp = paths["index"].pair_displacement(disp)
        bg_pos, fg_pos, neg = affinity_labels(label, paths["src"], paths["dst"])
        return irn_loss(aff, pair_disp, paths["target"], bg_pos, fg_pos, neg)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch["image"], batch["label"])
        batch_size = batch["image"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name == "loss", batch_size=batch_size)
        return losses["loss"]

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen BN anyway; keeps any future norm layer in eval mode
        return self

    def configure_optimizers(self):
        hp = self.hparams
        edge_params, dp_params = self.trainable_parameters()
        optimizer = torch.optim.SGD(
            [
                {"params": edge_params, "lr": hp.lr, "weight_decay": hp.weight_decay},
                {"params": dp_params, "lr": hp.lr * hp.dp_lr_mult, "weight_decay": hp.weight_decay},
            ],
            lr=hp.lr,
            momentum=hp.momentum,
            weight_decay=hp.weight_decay,
        )
        schedule = poly_schedule(optimizer, schedule_length(self), hp.poly_power, hp.poly_interval)
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    # -- after training --------------------------------------------------------------------------
    @torch.no_grad()
    def displacement_sum(self, images: Iterable[torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Sum of per-batch mean raw displacements ``[2]`` and the number of batches."""
        total = torch.zeros(2, device=self.device)
        count = 0
        for batch in images:
            disp = self.displacement_raw(self.taps(batch.to(self.device)))
            total += disp.mean(dim=(0, 2, 3))
            count += 1
        return total, count
