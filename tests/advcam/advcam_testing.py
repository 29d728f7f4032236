"""Small models and helpers for the AdvCAM tests (module name kept unique across test folders)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from advcam_pl.advcam.writer import CAMWriter, num_skipped, predictions


class TinyCAMNet(nn.Module):
    """A stride-16 conv net with ``features(x)`` and a bias-free 1×1 ``classifier`` (the CAM
    classifier's interface), small enough for many climbs per second on one CPU core."""

    def __init__(self, num_classes: int = 20, width: int = 8, channels: int = 24, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(width, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(width, channels, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU(),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1, bias=False)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    fan_in = m.weight[0].numel()
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                    if m.bias is not None:
                        m.bias.uniform_(-0.05, 0.05, generator=gen)
                elif isinstance(m, nn.BatchNorm2d):
                    m.weight.uniform_(0.8, 1.2, generator=gen)
                    m.bias.uniform_(-0.1, 0.1, generator=gen)
                    m.running_mean.uniform_(-0.1, 0.1, generator=gen)
                    m.running_var.uniform_(0.5, 1.5, generator=gen)
            self.classifier.weight.add_(0.1)  # a positive lean keeps every class alive on random images

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3), keepdim=True)).flatten(1)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b|."""
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


class LoggingCAMWriter(CAMWriter):
    """A CAMWriter that appends ``<id>`` to ``<log_dir>/writes_<rank>.txt`` for every file written
    (to count writes across DDP processes) and can fail after ``fail_after`` writes."""

    def __init__(self, cam_dir, log_dir, fail_after: int | None = None):
        super().__init__(cam_dir)
        self.log_dir = Path(log_dir)
        self.fail_after = fail_after

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        if self.fail_after is not None and self.written >= self.fail_after:
            raise RuntimeError(f"simulated crash after {self.written} images")
        self.skipped += num_skipped(prediction)
        for item in predictions(prediction):
            before = self.written
            super().write_on_batch_end(trainer, pl_module, item, batch_indices, batch, batch_idx, dataloader_idx)
            if self.written > before:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                with open(self.log_dir / f"writes_{trainer.global_rank}.txt", "a") as f:
                    f.write(item.image_id + "\n")


def logged_writes(log_dir) -> list[str]:
    return [line for p in sorted(Path(log_dir).glob("writes_*.txt")) for line in p.read_text().split()]
