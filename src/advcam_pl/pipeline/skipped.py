"""Images a stage skipped (``data.skip_bad=true``: unreadable image, mask or labels), recorded beside
its outputs in ``<folder>/skipped.json`` (``{id: reason}``) and honoured by every later stage.

A per-image stage reads the record of the folder it reads from (:func:`read_skipped`), leaves those
ids out, adds the ids it skips itself, and records the union in its own output folder
(:func:`record_skipped`), so the record travels down the chain: make_cam → make_ir_label /
make_sem_seg → train_irn / train_seg / eval_*. Each stage lists them in its metrics
(``skipped_ids``) and :func:`advcam_pl.pipeline.run_pipeline` in its summary.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from advcam_pl.io import atomic_save_json

log = logging.getLogger(__name__)

SKIPPED_NAME = "skipped.json"


def read_skipped(folder: str | os.PathLike | None) -> dict[str, str]:
    """``{id: reason}`` recorded in ``folder`` (empty when nothing was skipped or there is no folder)."""
    if folder is None:
        return {}
    path = Path(folder) / SKIPPED_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it and re-run the stage that wrote it") from err
    return {str(k): str(v) for k, v in data.items()}


def record_skipped(folder: str | os.PathLike, skipped: Mapping[str, str]) -> dict[str, str]:
    """Add ``skipped`` to ``folder``'s record (atomically); returns the whole record."""
    merged = {**read_skipped(folder), **{str(k): str(v) for k, v in skipped.items()}}
    if merged or (Path(folder) / SKIPPED_NAME).exists():
        atomic_save_json(Path(folder) / SKIPPED_NAME, dict(sorted(merged.items())))
    return merged


def forget_skipped(folder: str | os.PathLike) -> None:
    """Drop ``folder``'s record (its outputs are being made again)."""
    (Path(folder) / SKIPPED_NAME).unlink(missing_ok=True)


def without_skipped(ids: Sequence[str], skipped: Iterable[str]) -> list[str]:
    skip = set(skipped)
    return [i for i in ids if i not in skip]


def log_skipped(stage: str, skipped: Mapping[str, str]) -> None:
    if skipped:
        log.warning("%s: %d image(s) skipped (recorded as unreadable by data.skip_bad): %s", stage, len(skipped),
                    ", ".join(f"{i} ({r})" for i, r in sorted(skipped.items())[:10])
                    + (" ..." if len(skipped) > 10 else ""))
