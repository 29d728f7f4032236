"""What every stage needs: the data root, loggers and callbacks, a Trainer, metric logging, the
rules for "this stage's outputs are complete" (per image: :func:`all_written`, resuming with
:func:`missing_outputs`, which counts a truncated file as missing; metrics: :func:`is_fresh`), and a
resumable fit (:func:`fit_callbacks` + :func:`advcam_pl.training.checkpoint.fit_resumable`).

Kept small on purpose: a stage composes these, it does not inherit from anything. What made the
outputs is :mod:`advcam_pl.pipeline.provenance`; skipped images are :mod:`advcam_pl.pipeline.skipped`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from advcam_pl.errors import ConfigError
from advcam_pl.io import file_is_complete

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    pl.seed_everything(int(seed), workers=True, verbose=False)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. under ``taskset`` or SLURM)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_num_threads(num_threads: int | str | None) -> int:
    """Pin torch's intra-op threads (``cfg.num_threads``): an integer, ``"cores"`` (every core this
    process may use) or ``None`` (torch's default, left as it is); logs and returns the number in use."""
    import torch

    if num_threads is not None:
        torch.set_num_threads(available_cores() if num_threads == "cores" else int(num_threads))
    log.info("torch intra-op threads: %d (num_threads=%s)", torch.get_num_threads(), num_threads)
    return torch.get_num_threads()


def data_root(cfg: DictConfig) -> Path:
    """The VOC2012 folder of ``cfg.data``; the synthetic dataset is generated on first use."""
    root = Path(cfg.data.root)
    generate = cfg.data.get("generate")
    if generate is not None and not (root / "ImageSets" / "Segmentation").is_dir():
        from advcam_pl.data.synthetic import generate_dataset

        log.info("generating the synthetic dataset at %s", root)
        generate_dataset(root, **OmegaConf.to_container(generate, resolve=True))
    return root


def check_synthetic_settings(cfg: DictConfig, remedy: str = "pass another --out or remove that folder") -> None:
    """Refuse a synthetic set at ``cfg.data.root`` generated with other ``data.generate`` settings than
    ``cfg``'s (the stages would silently use it): :class:`~advcam_pl.errors.ConfigError` naming its
    ``synthetic.json``, the differing keys and ``remedy``. A set without the record (VOC) passes."""
    generate = cfg.data.get("generate")
    record = Path(cfg.data.root) / "synthetic.json"
    if generate is None or not record.is_file():
        return
    params = json.loads(record.read_text()).get("params", {})
    wanted = OmegaConf.to_container(generate, resolve=True)
    changed = {k: (params[k], v) for k, v in wanted.items() if k in params and params[k] != v}
    if changed:
        raise ConfigError(f"{record} was generated with other settings ("
                          + ", ".join(f"{k}: {old} there, {new} asked" for k, (old, new) in changed.items())
                          + f"); {remedy}")


def instantiate_loggers(cfg: DictConfig, stage: str, save_dir: str | Path | None = None) -> list:
    """The loggers of ``cfg.logger`` (a dict of ``_target_`` configs; empty for none); ``save_dir``
    replaces their configured folder (outside a Hydra job, where ``paths.output_dir`` is unset)."""
    loggers = []
    for name, conf in (cfg.get("logger") or {}).items():
        if conf is None or "_target_" not in conf:
            continue
        kwargs: dict[str, Any] = {} if save_dir is None else {"save_dir": str(save_dir)}
        if "WandbLogger" in conf._target_:
            kwargs["name"] = f"{cfg.task_name}-{stage}"
            kwargs["group"] = cfg.task_name
            kwargs["job_type"] = stage
        elif "CSVLogger" in conf._target_:
            kwargs["version"] = stage
        loggers.append(hydra.utils.instantiate(conf, **kwargs))
        log.debug("logger %s for stage %s", name, stage)
    return loggers


def finish_loggers(loggers: Sequence) -> None:
    """Close every logger (``wandb.finish()``), so the next multirun job starts clean."""
    for logger in loggers:
        try:
            logger.finalize("success")
        except Exception:  # a logger that fails to close must not hide the stage's result
            log.exception("closing logger %s failed", type(logger).__name__)
        if type(logger).__name__ == "WandbLogger":
            import wandb

            wandb.finish()


@contextmanager
def stage_loggers(cfg: DictConfig, stage: str, save_dir: str | Path | None = None) -> Iterator[list]:
    """``with stage_loggers(cfg, "train_cam") as loggers:`` — always closes them."""
    loggers = instantiate_loggers(cfg, stage, save_dir)
    try:
        yield loggers
    finally:
        finish_loggers(loggers)


def training_callbacks(cfg: DictConfig, loggers: Sequence) -> list[pl.Callback]:
    """The callbacks of ``cfg.callbacks`` (a dict of ``_target_`` configs) for a training stage.

    A ``LearningRateMonitor`` needs a logger: it is left out when there is none.
    """
    callbacks = []
    for name, conf in (cfg.get("callbacks") or {}).items():
        if conf is None or "_target_" not in conf:
            continue
        callback = hydra.utils.instantiate(conf)
        if isinstance(callback, pl.callbacks.LearningRateMonitor) and not loggers:
            log.debug("callback %s skipped: no logger", name)
            continue
        callbacks.append(callback)
    return callbacks


def log_metrics(loggers: Sequence, metrics: dict[str, float], step: int | None = None) -> None:
    """Send scalar metrics to every logger (non-scalars are skipped; they live in the JSON)."""
    scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    for logger in loggers:
        logger.log_metrics(scalars, step=step)


def build_trainer(
    cfg: DictConfig, loggers: Sequence = (), callbacks: Sequence = (), **overrides: Any
) -> pl.Trainer:
    """A Trainer from ``cfg.trainer`` plus stage-specific ``overrides`` (e.g. ``max_epochs``)."""
    return hydra.utils.instantiate(
        cfg.trainer, logger=list(loggers) or False, callbacks=list(callbacks), **overrides
    )


def fit_metrics(trainer: pl.Trainer) -> dict:
    """What a training stage reports after ``fit``: the last ``train_loss``, the optimiser ``steps`` and,
    when it validated, the last single-scale ``val_miou_single_scale``."""
    loss = trainer.callback_metrics.get("train/loss")
    metrics = {"train_loss": float(loss) if loss is not None else float("nan"), "steps": int(trainer.global_step)}
    val = trainer.callback_metrics.get("val/miou")
    if val is not None:
        metrics["val_miou_single_scale"] = float(val)
    return metrics


def list_ids(cfg: DictConfig, split: str) -> list[str]:
    """The image ids of list ``split`` of ``cfg.data``."""
    from advcam_pl.data.voc import VOCReader

    return VOCReader(data_root(cfg), split).ids


def missing_outputs(folder: str | Path, ids: Sequence[str], suffix: str) -> list[str]:
    """The ids whose ``folder/<id><suffix>`` is missing or incomplete (a truncated archive or PNG,
    :func:`advcam_pl.io.file_is_complete`): the items a resumed stage still owes."""
    folder = Path(folder)
    return [i for i in ids if not file_is_complete(folder / f"{i}{suffix}")]


def remove_broken_outputs(folder: str | Path, ids: Sequence[str], suffix: str) -> list[str]:
    """Delete the outputs of ``ids`` that exist but are incomplete (so a writer that never overwrites
    makes them again); returns their ids, logged with a warning."""
    folder = Path(folder)
    broken = [i for i in ids if (folder / f"{i}{suffix}").exists() and not file_is_complete(folder / f"{i}{suffix}")]
    for image_id in broken:
        (folder / f"{image_id}{suffix}").unlink(missing_ok=True)
    if broken:
        log.warning("%d broken output file(s) in %s will be made again (e.g. %s%s)", len(broken), folder, broken[0],
                    suffix)
    return broken


def images_to_do(stage: str, reader, out_dir: str | Path, suffix: str, upstream_dir: str | Path,
                 skip_bad: bool) -> tuple[list[str], dict[str, str]]:
    """The ids of ``reader``'s list that a per-image stage still owes (output missing or broken),
    and the images it leaves out: those recorded as skipped in ``upstream_dir`` (the folder it reads)
    or its own ``out_dir``, and, with ``skip_bad``, those unreadable now. The skipped ones are
    recorded in ``out_dir`` (:mod:`advcam_pl.pipeline.skipped`) and logged."""
    from advcam_pl.pipeline.skipped import log_skipped, read_skipped, record_skipped, without_skipped

    skipped = {**read_skipped(upstream_dir), **read_skipped(out_dir)}
    todo = missing_outputs(out_dir, without_skipped(reader.ids, skipped), suffix)
    if skip_bad:
        from advcam_pl.data.datamodules import find_bad_ids

        bad = find_bad_ids(reader, todo)
        skipped.update(bad)
        todo = without_skipped(todo, bad)
    record_skipped(out_dir, skipped)
    log_skipped(stage, skipped)
    return todo, skipped


def all_written(folder: str | Path, ids: Sequence[str], suffix: str) -> bool:
    """The skip rule of the per-image stages: ``folder/<id><suffix>`` is complete for every id."""
    return Path(folder).is_dir() and not missing_outputs(folder, ids, suffix)


def is_fresh(outputs: Sequence[str | Path], inputs: Iterable[str | Path]) -> bool:
    """The skip rule of the metrics stages: every output exists, there is at least one input, and no
    input is newer than the oldest output. (Metrics are cheap to recompute; a stale metrics file
    would hide the maps or masks written after it.)"""
    outputs = [Path(p) for p in outputs]
    if not all(p.is_file() for p in outputs):
        return False
    try:
        newest_input = max((Path(p).stat().st_mtime_ns for p in inputs), default=None)
    except FileNotFoundError:  # an input named explicitly (a checkpoint) that does not exist
        return False
    return newest_input is not None and min(p.stat().st_mtime_ns for p in outputs) >= newest_input


def require_cam_files(cam_dir: str | Path, ids: Sequence[str]) -> None:
    """Fail early, naming an example, when any of ``ids`` has no complete CAM file in ``cam_dir``."""
    from advcam_pl.advcam.cam_io import CAM_SUFFIX

    missing = missing_outputs(cam_dir, ids, CAM_SUFFIX)
    if missing:
        raise FileNotFoundError(f"{len(missing)} CAM files missing or incomplete in {cam_dir} (e.g. "
                                f"{missing[0]}{CAM_SUFFIX}); run make_cam first (it redoes broken files)")


# -- a resumable fit ----------------------------------------------------------------------------


def fit_callbacks(stage: str, final_ckpt: str | Path, every_n_steps: int = 0) -> list[pl.Callback]:
    """What every training stage adds to its callbacks: a NaN/inf-loss stop (first, so a diverged
    step is never saved) and the resumable progress checkpoint of ``final_ckpt`` (every epoch and
    every ``every_n_steps`` steps; SIGTERM/SIGINT save and stop after the current batch)."""
    from advcam_pl.training.callbacks import FiniteLossGuard, ProgressCheckpoint
    from advcam_pl.training.checkpoint import progress_path

    return [FiniteLossGuard(stage), ProgressCheckpoint(progress_path(final_ckpt), int(every_n_steps or 0))]


def fit_trainer_overrides(final_ckpt: str | Path) -> dict[str, Any]:
    """Trainer arguments of a training stage: on SLURM, Lightning's auto-requeue with its requeue
    checkpoints in a fixed folder beside ``final_ckpt`` (so the requeued job finds them)."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    from advcam_pl.training.checkpoint import hpc_dir

    if not SLURMEnvironment.detect():
        return {}
    return {"plugins": [SLURMEnvironment(auto_requeue=True)], "default_root_dir": str(hpc_dir(final_ckpt))}



def initial_weights(cfg: DictConfig, group: str) -> str | None:
    """Where ``cfg.<group>.module``'s backbone starts: the trained CAM classifier ``cfg.artifacts.cam_ckpt``
    when ``cfg.<group>.init_from_cam`` (its ``backbone.*`` tensors; the stand-in for ImageNet weights
    offline: tests, demo), else ``cfg.<group>.module.pretrained`` (``imagenet``, a file or ``None``)."""
    conf = cfg[group]
    return str(cfg.artifacts.cam_ckpt) if conf.get("init_from_cam", False) else conf.module.get("pretrained")


def backbone_source(cfg: DictConfig, group: str) -> str | None:
    """:func:`initial_weights` for a run: a missing CAM checkpoint under ``init_from_cam`` is an error."""
    source = initial_weights(cfg, group)
    if cfg[group].get("init_from_cam", False) and not Path(source).is_file():
        raise FileNotFoundError(f"{group}.init_from_cam: the CAM checkpoint {source} does not exist; run train_cam")
    return source


def initial_weights_input(cfg: DictConfig, group: str, key: str = "pretrained") -> dict[str, Any]:
    """Provenance inputs: ``{key: identity}`` of the file :func:`initial_weights` names (none for
    ``imagenet`` or a random init)."""
    from advcam_pl.pipeline.provenance import file_identity

    source = initial_weights(cfg, group)
    return {key: file_identity(source)} if source and Path(str(source)).suffix else {}
