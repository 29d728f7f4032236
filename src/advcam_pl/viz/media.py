"""Send pictures, tables and line plots of one stage to its Lightning loggers.

:class:`MediaLogger` wraps the stage's loggers (:func:`advcam_pl.pipeline.common.stage_loggers`):

- a ``WandbLogger`` gets ``log_image`` / ``log_table`` (and ``wandb.plot.line_series`` for curves),
  under the key ``<stage>/<name>``; offline runs keep them in ``wandb/offline-run-*/files/media``;
- a logger with a ``log_dir`` (``CSVLogger``: ``<paths.output_dir>/csv/<stage>``) gets files under
  ``<log_dir>/media/``: ``<name>.png`` for an image, ``<name>.csv`` for a table or a curve;
- any other logger is left out (debug message).

Names are paths such as ``seed/2007_000032``. Only rank 0 logs.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning_fabric.utilities.rank_zero import rank_zero_only
from PIL import Image

from advcam_pl.io import atomic_write

log = logging.getLogger(__name__)


def _is_wandb(logger: Any) -> bool:
    return type(logger).__name__ == "WandbLogger"


def _csv_text(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(["" if v is None else v for v in r] for r in rows)
    return buffer.getvalue()


class MediaLogger:
    """The media side of a stage's loggers (see the module docstring).

    Args:
        loggers: the stage's Lightning loggers.
        stage: the stage name, the first part of every W&B key.
    """

    def __init__(self, loggers: Sequence[Any], stage: str):
        self.stage = stage
        self.wandb = [lg for lg in loggers if _is_wandb(lg)]
        self.folders = [Path(lg.log_dir) / "media" for lg in loggers
                        if not _is_wandb(lg) and getattr(lg, "log_dir", None)]
        for lg in loggers:
            if not _is_wandb(lg) and not getattr(lg, "log_dir", None):
                log.debug("%s: logger %s takes no media", stage, type(lg).__name__)

    @property
    def active(self) -> bool:
        """Whether anything would receive media (false: the stage may skip preparing it)."""
        return bool(self.wandb or self.folders)

    def key(self, name: str) -> str:
        return f"{self.stage}/{name}"

    def _write(self, name: str, suffix: str, write) -> list[Path]:
        paths = [folder / f"{name}{suffix}" for folder in self.folders]
        for path in paths:
            atomic_write(path, write)
        return paths

    @rank_zero_only
    def image(self, name: str, picture: np.ndarray, caption: str | None = None) -> None:
        """One ``[H, W, 3]`` uint8 picture: W&B ``log_image``, ``<name>.png`` in each folder."""
        picture = np.asarray(picture, dtype=np.uint8)
        for logger in self.wandb:
            logger.log_image(self.key(name), [picture], caption=[caption or name])
        self._write(name, ".png", lambda tmp: Image.fromarray(picture).save(tmp, format="PNG"))

    @rank_zero_only
    def table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table: W&B ``log_table`` (a ``wandb.Table``), ``<name>.csv`` in each folder."""
        columns, rows = list(columns), [list(r) for r in rows]
        for logger in self.wandb:
            logger.log_table(self.key(name), columns=columns, data=rows)
        text = _csv_text(columns, rows)
        self._write(name, ".csv", lambda tmp: Path(tmp).write_text(text))

    @rank_zero_only
    def lines(self, name: str, x: str, xs: Sequence[float], series: Mapping[str, Sequence[float | None]],
              title: str | None = None) -> None:
        """Curves over a shared x axis (``None`` = undefined point, left out of the plot): a W&B line
        plot (``wandb.plot.line_series``), ``<name>.csv`` with columns ``x, *series`` in each folder."""
        xs = list(xs)
        for key, ys in series.items():
            if len(ys) != len(xs):
                raise ValueError(f"{name}: series {key!r} has {len(ys)} points for {len(xs)} x values")
        if self.wandb:
            import wandb

            # line_series wants the same x for every series: undefined points are dropped per series
            kept = {k: [(xv, yv) for xv, yv in zip(xs, ys) if yv is not None] for k, ys in series.items()}
            kept = {k: v for k, v in kept.items() if v}
            if kept:
                plot = wandb.plot.line_series(
                    xs=[[p[0] for p in v] for v in kept.values()], ys=[[p[1] for p in v] for v in kept.values()],
                    keys=list(kept), title=title or name, xname=x)
                for logger in self.wandb:
                    logger.experiment.log({self.key(name): plot})
        rows = [[xv, *(ys[i] for ys in series.values())] for i, xv in enumerate(xs)]
        text = _csv_text([x, *series], rows)
        self._write(name, ".csv", lambda tmp: Path(tmp).write_text(text))
