"""Checkpoints: written like every other stage output (temporary name, then renamed), read only as
data (``weights_only=True``), checked against the configured network before use.

- :func:`save_checkpoint_atomic`: ``trainer.save_checkpoint`` under a temporary name + rename + barrier;
- :func:`load_checkpoint_file`: ``torch.load(weights_only=True)`` with :data:`SAFE_GLOBALS` only, so a
  file with a code payload is refused; a truncated file is an error naming it;
- :func:`load_trained`: a trained LightningModule from our checkpoint, after checking that its
  architecture is the configured one and its weights are finite;
- :func:`progress_path`, :func:`resume_checkpoint`: where a fit keeps its resumable state
  (:class:`~advcam_pl.training.callbacks.ProgressCheckpoint`) and which file a restart resumes from;
- :func:`fit_resumable`: the training stages' fit, resumed from there, then the final checkpoint.
"""

from __future__ import annotations

import collections
import inspect
import logging
import os
import pathlib
import pickle
import typing
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from advcam_pl.errors import ArchitectureMismatchError, CorruptFileError, NonFiniteError, UntrustedFileError
from advcam_pl.io import temp_path, torch_file_is_complete


def _safe_globals() -> list:
    """What Lightning checkpoints of this project may hold besides tensors and plain containers:
    hyper-parameters kept as OmegaConf containers (a module instantiated by Hydra without
    ``_convert_``), paths, Lightning's ``AttributeDict``. No callable, no class with side effects."""
    from lightning_fabric.utilities.data import AttributeDict
    from omegaconf import DictConfig, ListConfig
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.nodes import AnyNode, BooleanNode, FloatNode, IntegerNode, StringNode

    return [DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, BooleanNode, FloatNode, IntegerNode,
            StringNode, typing.Any, dict, list, int, float, str, bool, collections.defaultdict,
            collections.OrderedDict, pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath,
            pathlib.PureWindowsPath, AttributeDict]


SAFE_GLOBALS = _safe_globals()

log = logging.getLogger(__name__)


def save_checkpoint_atomic(trainer: pl.Trainer, path: str | os.PathLike, weights_only: bool = False) -> Path:
    """``trainer.save_checkpoint`` to a temporary name beside ``path``, then rename it to ``path``.

    Every rank calls it (the strategy lets rank 0 write); rank 0 renames, and all ranks wait at a
    barrier until the file is in place, so no rank moves on (to a stage that reads it, or to
    ``is_done``) before it exists. An existing ``path`` is therefore always a complete checkpoint.
    ``weights_only``: weights and hyper-parameters, without optimiser and loop state.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)  # only rank 0's is written (the strategy writes once)
    trainer.save_checkpoint(tmp, weights_only=weights_only)
    if trainer.is_global_zero:
        os.replace(tmp, path)
    trainer.strategy.barrier("save_checkpoint_atomic")
    return path


def load_checkpoint_file(path: str | os.PathLike, what: str = "checkpoint", remedy: str = "") -> dict:
    """``torch.load(path, weights_only=True)`` on the CPU, allowing :data:`SAFE_GLOBALS` only.

    Raises :class:`FileNotFoundError`, :class:`~advcam_pl.errors.CorruptFileError` (truncated, not a
    torch file) or :class:`~advcam_pl.errors.UntrustedFileError` (it holds other Python objects,
    e.g. code run on unpickling), each naming ``what`` and ``path``; ``remedy`` is appended.
    """
    path = Path(path)
    hint = f"; {remedy}" if remedy else ""
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist{hint}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise CorruptFileError(f"{what} {path} cannot be unpickled ({err}){hint}") from None
        detail = next((line.strip() for line in str(err).splitlines() if "Unsupported" in line), "")
        raise UntrustedFileError(
            f"{what} {path} holds Python objects besides weights ({detail[:200]}); it is refused because "
            "loading it could run code. Only tensors, plain containers and Lightning's checkpoint contents "
            "are accepted: re-save the weights as a plain state dict (torch.save(model.state_dict(), ...)) "
            "from a source you trust" + hint
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CorruptFileError(f"{what} {path} is truncated or not a PyTorch file ({first}){hint}") from None
    return obj


def checkpoint_is_complete(path: str | os.PathLike) -> bool:
    """A cheap "finished" check: the file is a whole torch archive (nothing is unpickled)."""
    return torch_file_is_complete(path)


def check_finite_weights(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`~advcam_pl.errors.NonFiniteError` naming ``source`` and the tensors with NaN or
    infinite values (a diverged training)."""
    bad = [k for k, v in state_dict.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise NonFiniteError(f"{source}: {len(bad)} tensors hold NaN or infinite values (e.g. {bad[0]}): the "
                             "training diverged; train again with a lower learning rate")


def check_architecture(hparams: Mapping[str, Any], expected: Mapping[str, Any], source: str,
                       configured_by: str) -> None:
    """Raise :class:`~advcam_pl.errors.ArchitectureMismatchError` when a checkpoint's
    hyper-parameters differ from ``expected`` (``{name: configured value}``, read from config
    ``configured_by``, e.g. ``"classifier.module"``) in any key both have."""
    diffs = [f"{k}={hparams[k]!r} in the checkpoint, {configured_by}.{k}={v!r} configured"
             for k, v in expected.items() if k in hparams and _plain(hparams[k]) != _plain(v)]
    if diffs:
        raise ArchitectureMismatchError(
            f"{source} was made for another network than the configured one: {'; '.join(diffs)}. Pick the "
            f"config that matches the checkpoint (or the checkpoint that matches {configured_by})")


def check_module_class(hparams: Mapping[str, Any], module_cls: type, source: str, configured_by: str) -> None:
    """Raise :class:`~advcam_pl.errors.ArchitectureMismatchError` when a checkpoint's
    hyper-parameters are not arguments of ``module_cls`` (it was made by another class, e.g. a
    ``TorchvisionCAMClassifier`` checkpoint read as a ``CAMClassifier``)."""
    params = inspect.signature(module_cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    foreign = sorted(set(hparams) - set(params))
    if foreign:
        shown = ", ".join(f"{k}={hparams[k]!r}" for k in foreign)
        raise ArchitectureMismatchError(
            f"{source} was made by another network class than the configured {module_cls.__name__} (its "
            f"hyper-parameters {shown} are none of {module_cls.__name__}'s). Pick the config that matches the "
            f"checkpoint (its {configured_by}._target_ and settings)")


def _plain(value: Any) -> Any:
    if isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping):
        return [_plain(v) for v in value]
    return value


def load_trained(module_cls: type[pl.LightningModule], path: str | os.PathLike, *, what: str, remedy: str,
                 expected: Mapping[str, Any] | None = None, configured_by: str = "",
                 **overrides: Any) -> pl.LightningModule:
    """A trained module of ``module_cls`` from our Lightning checkpoint at ``path`` (on the CPU).

    The file is read as data only (:func:`load_checkpoint_file`); its hyper-parameters must match
    ``expected`` (:func:`check_architecture`) and its weights must be finite. ``overrides`` go to
    ``load_from_checkpoint`` (e.g. ``pretrained=None``).
    """
    checkpoint = load_checkpoint_file(path, what, remedy)
    if "state_dict" not in checkpoint:
        raise CorruptFileError(f"{what} {path} is not a Lightning checkpoint (no state_dict); {remedy}")
    hparams = checkpoint.get("hyper_parameters") or {}
    check_module_class(hparams, module_cls, f"{what} {path}", configured_by)
    check_architecture(hparams, expected or {}, f"{what} {path}", configured_by)
    check_finite_weights(checkpoint["state_dict"], f"{what} {path}")
    if "pytorch-lightning_version" not in checkpoint:
        raise CorruptFileError(f"{what} {path} is not a Lightning checkpoint (no pytorch-lightning_version); "
                               f"{remedy}")
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return module_cls.load_from_checkpoint(path, map_location="cpu", weights_only=True, **overrides)


def progress_path(final: str | os.PathLike) -> Path:
    """Where the fit that writes checkpoint ``final`` keeps its resumable state: ``<stem>.progress.ckpt``."""
    final = Path(final)
    return final.with_name(f"{final.stem}.progress.ckpt")


def hpc_dir(final: str | os.PathLike) -> Path:
    """The folder of Lightning's SLURM requeue checkpoints (``hpc_ckpt_<n>.ckpt``) of that fit."""
    final = Path(final)
    return final.with_name(f"{final.stem}.hpc")


def resume_checkpoint(final: str | os.PathLike) -> Path | None:
    """The checkpoint a restarted fit of ``final`` resumes from: the complete one with the most
    optimiser steps among the progress checkpoint and Lightning's SLURM requeue checkpoints."""
    candidates = [path for path in (progress_path(final), *sorted(hpc_dir(final).glob("hpc_ckpt_*.ckpt")))
                  if checkpoint_is_complete(path)]
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    best, best_step = None, -1
    for path in candidates:
        step = int(load_checkpoint_file(path, "resumable checkpoint").get("global_step", 0))
        if step > best_step:
            best, best_step = path, step
    return best


def fit_resumable(trainer: pl.Trainer, model: pl.LightningModule, datamodule: pl.LightningDataModule,
                  ckpt: str | os.PathLike, weights_only: bool = True) -> Path:
    """``trainer.fit``, resumed from the newest complete progress (or SLURM requeue) checkpoint of
    ``ckpt`` (:func:`resume_checkpoint`, written by
    :class:`~advcam_pl.training.callbacks.ProgressCheckpoint`) when a killed run left one; then, once
    the weights are checked finite, the final checkpoint at ``ckpt`` (atomic; ``weights_only``: weights
    and hyper-parameters only) and the resumable state removed."""
    import shutil

    resume = resume_checkpoint(ckpt)
    if resume is not None:
        log.info("resuming the fit of %s from %s", ckpt, resume)
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    check_finite_weights(model.state_dict(), f"the network trained for {ckpt}")
    path = save_checkpoint_atomic(trainer, ckpt, weights_only=weights_only)
    if trainer.is_global_zero:
        progress_path(ckpt).unlink(missing_ok=True)
        shutil.rmtree(hpc_dir(ckpt), ignore_errors=True)
    return path
