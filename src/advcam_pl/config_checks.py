"""Config values checked when the config is composed, before any data or model loads.

:func:`check_config` (run by :func:`advcam_pl.pipeline.run_pipeline` first) raises
:class:`~advcam_pl.errors.ConfigError` naming every bad key, its value and what is expected
(``cam.lam must be a number >= 0, got 'abc' (str)``), instead of a failure at the first image. It
also checks what the environment must provide for the stages of the run: a GPU when
``trainer.accelerator`` asks for one (:func:`check_accelerator`, which every stage that picks a
device itself uses too), and the dense CRF when a stage of the run uses it (:func:`check_crf`).

A key the config lacks is not checked (config groups of other helpers add their own keys); a new
numeric or enumerated knob belongs in :data:`RULES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from advcam_pl.errors import ConfigError

_ABSENT = object()


@dataclass(frozen=True)
class Rule:
    """``accepts(value) -> bool`` and the words for what it accepts (``"a number >= 0"``)."""

    accepts: Callable[[Any], bool]
    expected: str


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def number(low: float | None = None, high: float | None = None, *, integer: bool = False,
           low_open: bool = False, optional: bool = False) -> Rule:
    def accepts(v: Any) -> bool:
        if v is None:
            return optional
        if not _is_number(v) or (integer and not (isinstance(v, int) or float(v).is_integer())):
            return False
        if low is not None and (v <= low if low_open else v < low):
            return False
        return high is None or v <= high

    kind = "an integer" if integer else "a number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"<= {high:g}")
    expected = f"{kind} {' and '.join(bounds)}".strip() + (" or null" if optional else "")
    return Rule(accepts, expected)


def choice(*values: Any, optional: bool = False) -> Rule:
    def accepts(v: Any) -> bool:
        return (v is None and optional) or (not isinstance(v, float) and v in values)

    return Rule(accepts, "one of " + ", ".join(repr(v) for v in values) + (" or null" if optional else ""))


def numbers(low: float = 0.0, low_open: bool = True) -> Rule:
    item = number(low, low_open=low_open)
    return Rule(lambda v: isinstance(v, Sequence) and not isinstance(v, str) and len(v) > 0
                and all(item.accepts(x) for x in v), f"a non-empty list of numbers {'>' if low_open else '>='} {low:g}")


def or_auto(rule: Rule) -> Rule:
    """``rule`` or the string ``auto`` (derived per run: :mod:`advcam_pl.pipeline.resolve_auto`)."""
    return Rule(lambda v: v == "auto" or rule.accepts(v), f"{rule.expected} or 'auto'")


BOOL = choice(True, False)
COUNT = number(0, integer=True)
POSITIVE_INT = number(1, integer=True)
FRACTION = number(0, 1)
RATE = number(0, low_open=True)
DEPTH = choice(18, 34, 50, 101, 152)

PATH = Rule(lambda v: isinstance(v, str) and v != "", "a path")

RULES: dict[str, Rule] = {
    "seed": number(integer=True),
    "data.root": Rule(PATH.accepts, "a path (the VOC2012 folder, e.g. data.root=/data/VOCdevkit/VOC2012)"),
    "skip_done": BOOL,
    "num_threads": Rule(lambda v: v is None or v == "cores" or POSITIVE_INT.accepts(v),
                        "an integer >= 1, 'cores' or null"),
    "data.num_workers": COUNT,
    "data.skip_bad": BOOL,
    # seeds
    "cam.method": choice("cam", "advcam"),
    "cam.scales": numbers(),
    "cam.batch_size": POSITIVE_INT,
    "cam.analysis": BOOL,
    # AdvCAM's knobs (advcam_pl.advcam.ClimbOptions, which checks the combinations when instantiated)
    "cam.climb.steps": POSITIVE_INT,
    "cam.climb.step_size": RATE,
    "cam.climb.lam": number(0),
    "cam.climb.tau": FRACTION,
    "cam.climb.suppress_others": choice(True, False, "all", "present"),
    "cam.climb.attribution": choice("gradcam", "cam"),
    "cam.climb.step_norm": choice("linf", "none"),
    "cam.climb.clamp": choice("current", "initial", "none"),
    "cam.climb.half_steps_at_half_scale": BOOL,
    "cam.climb.accumulate": choice("before_step", "include_last"),
    "cam.climb.impl": choice("fast", "reference"),
    "cam.climb.chunk_size": number(1, integer=True, optional=True),
    "cam.climb.channels_last": BOOL,
    "cam.climb.tf32": choice(True, False, optional=True),
    "cam.climb.compile": BOOL,
    "eval_cam.thresholds.start": FRACTION,
    "eval_cam.thresholds.stop": FRACTION,
    "eval_cam.thresholds.step": number(0, 1, low_open=True),
    "eval_cam.crf": BOOL,
    # classifier
    "classifier.module.depth": DEPTH,
    "classifier.module.arch": Rule(lambda v: isinstance(v, str) and v != "", "a torchvision model name"),
    "classifier.module.output_stride": choice(16, 32),
    "classifier.module.num_classes": POSITIVE_INT,
    "classifier.module.norm": choice("frozen", "batch"),
    "classifier.module.lr": RATE,
    "classifier.module.momentum": number(0),
    "classifier.module.weight_decay": number(0),
    "classifier.module.allow_partial_init": BOOL,
    "classifier.train.max_epochs": POSITIVE_INT,
    "classifier.train.batch_size": POSITIVE_INT,
    "classifier.train.crop_size": POSITIVE_INT,
    "classifier.train.save_every_n_steps": COUNT,
    # IRN
    "irn.num_workers": COUNT,
    "irn.init_from_cam": BOOL,
    "irn.ir_label.fg_threshold": or_auto(FRACTION),
    "irn.ir_label.bg_threshold": or_auto(FRACTION),
    "irn.crf.t": POSITIVE_INT,
    "irn.crf.gt_prob": number(0, 1, low_open=True),
    "irn.module.depth": DEPTH,
    "irn.module.lr": RATE,
    "irn.module.radius": or_auto(number(2, integer=True)),
    "irn.module.allow_partial_init": BOOL,
    "irn.train.crop_size": POSITIVE_INT,
    "irn.train.batch_size": POSITIVE_INT,
    "irn.train.max_epochs": POSITIVE_INT,
    "irn.train.max_steps": number(1, integer=True, optional=True),
    "irn.train.save_every_n_steps": COUNT,
    "irn.random_walk.radius": POSITIVE_INT,
    "irn.random_walk.beta": RATE,
    "irn.random_walk.exp_times": or_auto(COUNT),
    "irn.random_walk.cam_power": RATE,
    "irn.random_walk.sem_seg_bg_threshold": or_auto(FRACTION),
    "irn.random_walk.method": choice("sparse", "dense"),
    # segmentation
    "model.module.depth": DEPTH,
    "model.module.num_classes": POSITIVE_INT,
    "model.module.lr": RATE,
    "model.module.allow_partial_init": BOOL,
    "model.train.max_steps": POSITIVE_INT,
    "model.train.batch_size": POSITIVE_INT,
    "model.train.accumulate": POSITIVE_INT,
    "model.train.crop_size": POSITIVE_INT,
    "model.train.save_every_n_steps": COUNT,
    "model.train.val_batches": COUNT,
    "model.eval.scales": numbers(),
    "model.eval.flip": BOOL,
    "model.eval.fuse": choice("max", "mean"),
    "model.eval.crf_workers": COUNT,
    "model.eval.crf.enabled": BOOL,
    # semi-supervised (CCT)
    "semi.weak_labels": choice("sem_seg", "ir_label", "none"),
    "semi.init_from_cam": BOOL,
    "semi.module.depth": DEPTH,
    "semi.module.output_stride": choice(8, 16),
    "semi.module.num_classes": POSITIVE_INT,
    "semi.module.lr": RATE,
    "semi.data.batch_size": POSITIVE_INT,
    "semi.data.weak_batch_size": POSITIVE_INT,
    "semi.data.crop_size": POSITIVE_INT,
    "semi.train.epochs": POSITIVE_INT,
    "semi.train.val_every_n_epochs": POSITIVE_INT,
    "semi.train.save_every_n_steps": COUNT,
    "semi.eval.scales": numbers(),
    "semi.eval.flip": BOOL,
    "semi.eval.average": choice("raw", "softmax"),
    "semi.eval.crf_workers": COUNT,
    "semi.eval.crf.enabled": BOOL,
    # dashboards (advcam_pl.viz)
    "viz.enabled": BOOL,
    "viz.num_images": COUNT,
    # unquoted, 2007_000032 is read as the integer 2007000032
    "viz.ids": Rule(lambda v: v is None or (isinstance(v, list) and all(isinstance(i, str) and i for i in v)),
                    "null or a list of image ids as strings (quote them: viz.ids=['2007_000032'])"),
    "viz.strip_steps": POSITIVE_INT,
    "viz.alpha": FRACTION,
}


def _plain(value: Any) -> Any:
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def config_errors(cfg: DictConfig) -> list[str]:
    """One line per bad value: ``"<key> must be <expected>, got <value> (<type>)"``."""
    errors = []
    for key, rule in RULES.items():
        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
        except MissingMandatoryValue:
            errors.append(f"{key} must be set: {rule.expected}")
            continue
        except Exception as err:  # a broken interpolation
            errors.append(f"{key} cannot be read: {type(err).__name__}: {str(err).splitlines()[0]}")
            continue
        if value is _ABSENT:
            continue
        value = _plain(value)
        if not rule.accepts(value):
            errors.append(f"{key} must be {rule.expected}, got {value!r} ({type(value).__name__})")
    errors += _overwrite_errors(cfg)
    if not errors:
        errors += _climb_errors(cfg)
    thresholds = cfg.get("eval_cam", {}).get("thresholds") if cfg.get("eval_cam") else None
    if thresholds is not None and not errors:
        if _is_number(thresholds.get("start")) and _is_number(thresholds.get("stop")) and \
                thresholds.start > thresholds.stop:
            errors.append(f"eval_cam.thresholds.start ({thresholds.start}) must be <= eval_cam.thresholds.stop "
                          f"({thresholds.stop})")
    return errors


def _climb_errors(cfg: DictConfig) -> list[str]:
    """What make_cam's own reading of ``cfg.cam`` rejects (unknown keys, ClimbOptions' combinations)."""
    if OmegaConf.select(cfg, "cam.method", default=None) is None:
        return []
    from hydra.errors import InstantiationException

    from advcam_pl.pipeline.make_cam import climb_options

    try:
        climb_options(cfg.cam)
    except (ValueError, TypeError, InstantiationException) as err:
        return [f"cam: {err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err}"]
    return []


def _overwrite_errors(cfg: DictConfig) -> list[str]:
    from advcam_pl.pipeline import STAGES

    value = _plain(cfg.get("overwrite", False))
    if value is None or isinstance(value, bool):
        return []
    names = [value] if isinstance(value, str) else value
    if isinstance(names, list) and all(isinstance(n, str) and n in STAGES for n in names):
        return []
    return [f"overwrite must be true, false, a stage name or a list of stage names ({', '.join(STAGES)}), "
            f"got {value!r}"]


def check_accelerator(accelerator: str) -> None:
    """A GPU accelerator without a visible GPU is an error in every stage (none falls back silently)."""
    import torch

    if str(accelerator) in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator} but no CUDA GPU is visible (torch.cuda.is_available() "
                          "is False); use trainer=cpu, or trainer.accelerator=auto to take a GPU only when there "
                          "is one")


def crf_stages(cfg: DictConfig) -> list[str]:
    """The stages of this run that use the dense CRF."""
    from advcam_pl.pipeline import stage_names

    names = stage_names(cfg.get("stages", []))
    uses = {
        "make_ir_label": True,
        "eval_cam": bool(OmegaConf.select(cfg, "eval_cam.crf", default=False)),
        "eval_seg": bool(OmegaConf.select(cfg, "model.eval.crf.enabled", default=False)),
        "eval_semi": bool(OmegaConf.select(cfg, "semi.eval.crf.enabled", default=False)),
    }
    return [n for n in names if uses.get(n, False)]


def check_crf(cfg: DictConfig) -> None:
    """Fail now, with the install hint, when a stage of the run needs pydensecrf and it cannot be
    imported (rather than after a long sweep, inside a worker process)."""
    stages = crf_stages(cfg)
    if not stages:
        return
    from advcam_pl.refine.crf import require_densecrf

    try:
        require_densecrf()
    except ImportError as err:
        raise ImportError(f"stage(s) {', '.join(stages)} of this run use the dense CRF: {err}; or leave the CRF "
                          "out (eval_cam.crf=false, model.eval.crf.enabled=false)") from err


def check_config(cfg: DictConfig) -> None:
    """Every check of this module; raises :class:`ConfigError` listing all bad keys at once."""
    errors = config_errors(cfg)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
    check_accelerator(str(OmegaConf.select(cfg, "trainer.accelerator", default="auto")))
    check_crf(cfg)
