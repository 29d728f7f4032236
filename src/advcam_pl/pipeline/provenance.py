"""What made a stage's outputs, recorded beside them and compared on the next run.

A record holds the *settings* that determine a stage's outputs (config values by dotted key) and the
*identity* of the inputs they were made from: a file's SHA-256, a folder's own record digest (so a
chain of stages is a chain of digests), or ``"unrecorded"`` for a folder nobody recorded (e.g. CAM
files made outside the pipeline). It lives in ``<folder>/provenance.json`` for a folder of per-image
outputs and in ``<file>.provenance.json`` beside a single output file.

A stage opts in with two lines: ``provenance(cfg).begin(cfg)`` at the start of ``run`` (before any
output is written) and ``provenance(cfg).matches()`` in ``is_done``. ``begin``:

1. removes the temporary files of killed writes (:func:`advcam_pl.io.remove_stale_temp_files`);
2. compares the record with this run: the same → go on (a resumed run keeps what is finished);
3. different, or outputs without any record → a *product* (checkpoint, maps, labels, masks) is
   refused with :class:`~advcam_pl.errors.StaleOutputsError`, naming the changed keys and the two
   ways on (a new name, or ``overwrite=true``); an *evaluation* (metrics, predictions) is redone;
4. ``overwrite`` for this stage (``overwrite=true`` or ``overwrite=[stage, ...]``) deletes the
   outputs and computes them again, once per run: a run continued after a kill or a SLURM requeue
   (the same ``ADVCAM_RUN_ID`` / ``SLURM_JOB_ID``) and the other DDP ranks of the same run keep
   what this run already recomputed.

Only global rank 0 deletes and writes; the other ranks wait until the record is the one of this run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from advcam_pl.errors import StaleOutputsError
from advcam_pl.io import atomic_save_json, remove_stale_temp_files, temp_path

log = logging.getLogger(__name__)

RECORD_NAME = "provenance.json"
RECORD_SUFFIX = ".provenance.json"
POLICIES = ("refuse", "replace")  # products / evaluations
UNRECORDED = "unrecorded"
_ABSENT = object()
WAIT_SECONDS = 600  # how long a non-zero rank waits for rank 0's record


# -- settings and identities ---------------------------------------------------------------------


def _normalise(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return str(value)


def flatten(node: Any, prefix: str, ignore: Iterable[str] = ()) -> dict[str, Any]:
    """``{dotted key: normalised value}`` of a plain nested mapping, keys under ``prefix``, without
    the keys in ``ignore`` or below them."""
    ignore = tuple(ignore)
    out: dict[str, Any] = {}

    def walk(key: str, value: Any) -> None:
        if any(key == i or key.startswith(i + ".") for i in ignore):
            return
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{key}.{k}", v)
        else:
            out[key] = _normalise(value)

    walk(prefix, node)
    return out


def settings_of(cfg: DictConfig, keys: Iterable[str], ignore: Iterable[str] = ()) -> dict[str, Any]:
    """``{dotted key: value}`` of the config subtrees or values at ``keys`` (resolved, flattened),
    without the keys in ``ignore`` or below them. A key the config lacks is left out."""
    ignore = tuple(ignore)
    out: dict[str, Any] = {}
    for key in keys:
        if OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False) is _ABSENT:
            continue
        node = OmegaConf.select(cfg, key, throw_on_missing=False)
        if isinstance(node, DictConfig | ListConfig):
            node = OmegaConf.to_container(node, resolve=True)
        out.update(flatten(node, key, ignore))
    return out


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_identity(path: str | os.PathLike) -> str:
    """``"sha256:<hex>"`` of a file's bytes (cached per size and mtime within the process), or
    ``"missing"``."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "missing"
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _SHA_CACHE[key] = f"sha256:{digest.hexdigest()}"
    return _SHA_CACHE[key]


def folder_identity(folder: str | os.PathLike) -> str:
    """The identity of a folder of stage outputs: ``"record:<digest>"`` of its record, else
    ``"unrecorded"`` (or ``"missing"`` when there is no such folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return "missing"
    try:
        record = json.loads((folder / RECORD_NAME).read_text())
    except (FileNotFoundError, ValueError):
        return UNRECORDED
    return f"record:{record['digest']}" if "digest" in record else UNRECORDED


def list_identity(root: str | os.PathLike, split: str) -> str:
    """The identity of image list ``split`` of a VOC tree (its file's SHA-256)."""
    from advcam_pl.data.voc import LIST_DIR

    return file_identity(Path(root) / LIST_DIR / f"{split}.txt")


# -- runs, ranks, overwrite -----------------------------------------------------------------------


def run_id() -> str:
    """This run's id: ``ADVCAM_RUN_ID``, else ``slurm-<SLURM_JOB_ID>`` (the same after a requeue),
    else a new one, exported so that processes started by this one (DDP ranks) share it."""
    if "ADVCAM_RUN_ID" not in os.environ:
        job = os.environ.get("SLURM_JOB_ID")
        os.environ["ADVCAM_RUN_ID"] = f"slurm-{job}" if job else uuid.uuid4().hex[:12]
    return os.environ["ADVCAM_RUN_ID"]


def global_rank() -> int:
    """This process's global rank: torch.distributed's once initialised, else the launcher's env."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def overwrites(cfg: DictConfig, stage: str) -> bool:
    """Whether ``cfg.overwrite`` (``false``, ``true``, a stage name or a list of them) names ``stage``."""
    value = cfg.get("overwrite", False)
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, str):
        return value == stage
    return stage in list(value)


# -- the record of one stage's outputs -----------------------------------------------------------


@dataclass
class Provenance:
    """What determines the outputs of ``stage`` at ``output`` (a folder or a file).

    ``patterns``: the stage's files inside a folder output (``("*.npz",)``), deleted by
    ``overwrite``; ``companions``: other files or folders of the same outputs (a progress
    checkpoint, an analysis JSON), deleted with them. ``keep_both``: how a user keeps the old
    outputs and makes new ones (e.g. ``"a new cam.name"``). ``policy``: ``"refuse"`` (products) or
    ``"replace"`` (evaluations).
    """

    stage: str
    output: Path
    settings: dict[str, Any]
    inputs: dict[str, str]
    keep_both: str
    patterns: Sequence[str] = ()
    companions: Sequence[Path] = ()
    policy: str = "refuse"
    _digest: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        self.companions = [Path(p) for p in self.companions]
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")

    @property
    def is_folder(self) -> bool:
        return bool(self.patterns)

    @property
    def record_path(self) -> Path:
        return self.output / RECORD_NAME if self.is_folder else self.output.with_name(self.output.name + RECORD_SUFFIX)

    @property
    def digest(self) -> str:
        if self._digest is None:
            key = json.dumps({"settings": self.settings, "inputs": self.inputs}, sort_keys=True)
            self._digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        return self._digest

    def recorded(self) -> dict | None:
        try:
            return json.loads(self.record_path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return {}

    def matches(self) -> bool:
        """Whether the outputs were recorded as made by exactly these settings and inputs."""
        record = self.recorded()
        return bool(record) and record.get("digest") == self.digest

    def output_files(self) -> list[Path]:
        if self.is_folder:
            if not self.output.is_dir():
                return []
            return [p for pattern in self.patterns for p in self.output.glob(pattern) if p.is_file()]
        return [p for p in (self.output, *self.companions) if p.exists()]

    def changes(self, record: Mapping | None) -> list[str]:
        """Lines naming what differs between ``record`` and this run."""
        if not record:
            return [f"no record of the settings that made them ({self.record_path} is missing or unreadable; "
                    "made by an earlier version, or by hand)"]
        lines = []
        old, new = record.get("settings", {}), self.settings
        for key in sorted(old.keys() | new.keys()):
            if old.get(key, "<unset>") != new.get(key, "<unset>"):
                lines.append(f"{key}: {old.get(key, '<unset>')!r} then, {new.get(key, '<unset>')!r} now")
        old_in, new_in = record.get("inputs", {}), self.inputs
        for key in sorted(old_in.keys() | new_in.keys()):
            if old_in.get(key) != new_in.get(key):
                lines.append(f"input {key}: changed since ({old_in.get(key)} then, {new_in.get(key)} now)")
        return lines

    # -- at the start of a stage run -------------------------------------------------------------

    def remove_temp_files(self) -> None:
        if self.is_folder:
            remove_stale_temp_files(self.output, recursive=True)
        else:
            remove_stale_temp_files(self.output.parent, target=self.output.name)
            for companion in self.companions:
                if companion.is_dir():
                    remove_stale_temp_files(companion, recursive=True)
                else:
                    remove_stale_temp_files(companion.parent, target=companion.name)

    def begin(self, cfg: DictConfig) -> None:
        """Check (and on rank 0 write) the record before the stage writes anything; see the module doc."""
        rank = global_rank()
        if rank == 0:
            self.remove_temp_files()
        record = self.recorded()
        overwrite = overwrites(cfg, self.stage)
        this_run = run_id()
        same = bool(record) and record.get("digest") == self.digest
        recomputed_by_this_run = same and record.get("overwritten_by") == this_run
        if same and (not overwrite or recomputed_by_this_run):
            return
        if record is None and not self.output_files() and not overwrite:  # nothing made yet
            self._write(rank, overwritten_by=None)
            return
        if not same and not overwrite and self.policy == "refuse":
            raise StaleOutputsError(self._refusal(record))
        if rank != 0:
            self._wait_for_rank_zero(overwrite, this_run)
            return
        files = self.output_files()
        if files:
            reason = "overwrite" if overwrite else "their settings or inputs changed"
            log.warning("%s: deleting %d existing output file(s) in %s (%s) and computing them again", self.stage,
                        len(files), self.output, reason)
            if not same and record is not None:
                log.warning("%s: what changed:\n  %s", self.stage, "\n  ".join(self.changes(record)))
        self.delete_outputs()
        self._write(rank, overwritten_by=this_run if overwrite else None)

    def delete_outputs(self) -> None:
        for path in self.output_files():
            path.unlink(missing_ok=True)
        for companion in self.companions:
            if companion.is_dir():
                shutil.rmtree(companion, ignore_errors=True)
            else:
                companion.unlink(missing_ok=True)
        if self.is_folder:
            from advcam_pl.pipeline.skipped import forget_skipped

            forget_skipped(self.output)

    def _write(self, rank: int, overwritten_by: str | None) -> None:
        if rank != 0:
            self._wait_for_rank_zero(False, run_id())
            return
        record = {"stage": self.stage, "digest": self.digest, "settings": self.settings, "inputs": self.inputs,
                  "overwritten_by": overwritten_by, "written": time.strftime("%Y-%m-%d %H:%M:%S")}
        if overwritten_by is not None or self.record_path.exists() or self.policy == "replace":
            atomic_save_json(self.record_path, record)
            return
        # First record: create it only if absent, so two processes starting on the same outputs with
        # different settings cannot both go on (the second one then compares and refuses).
        tmp = temp_path(self.record_path)
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        try:
            os.link(tmp, self.record_path)
        except FileExistsError:
            other = self.recorded()
            if not other or other.get("digest") != self.digest:
                raise StaleOutputsError(self._refusal(other)) from None
        except OSError:  # a file system without hard links
            os.replace(tmp, self.record_path)
        finally:
            tmp.unlink(missing_ok=True)

    def _wait_for_rank_zero(self, overwrite: bool, this_run: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            record = self.recorded()
            if record and record.get("digest") == self.digest and (
                    not overwrite or record.get("overwritten_by") == this_run):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{self.stage}: rank {global_rank()} waited {WAIT_SECONDS} s for rank 0 to record the "
                           f"outputs in {self.record_path}")

    def _refusal(self, record: Mapping | None) -> str:
        what, verb, them = ((f"the outputs in {self.output}", "were", "them") if self.is_folder
                            else (str(self.output), "was", "it"))
        changes = "\n  ".join(self.changes(record))
        return (f"{self.stage}: {what} {verb} made with other settings or inputs than this run's:\n  {changes}\n"
                f"Keep {them} and write new outputs: use {self.keep_both}. Replace {them}: add overwrite=true (or "
                f"overwrite=[{self.stage}]), which deletes {them} and computes {them} again.")
