"""Stage make_cam: CAM or AdvCAM for every image of ``cfg.data.infer_list``.

Reads the classifier checkpoint ``cfg.artifacts.cam_ckpt``; writes ``cfg.artifacts.cam_dir/<id>.npz``
(``keys``, ``cam``, ``high_res``; see :mod:`advcam_pl.advcam.cam_io`). Runs as ``trainer.predict``
(``cam.batch_size`` images of one size per step, their (image, class) climbs batched together;
any number of devices, each image written once); an interrupted run goes on where it stopped,
because finished ids are left out. AdvCAM's knobs are ``cam.climb``, which instantiates
:class:`~advcam_pl.advcam.ClimbOptions`. ``cam.analysis=true`` first climbs the images of
``cam.analysis_split`` with their GT masks and writes the per-step curves to
``<cam_dir>_analysis.json``. The dashboards' pictures (``cfg.viz``, :mod:`advcam_pl.viz.stages`)
climb a few images once more with their trajectory, after the timed pass.

The classifier checkpoint is read as data only, as the class of ``cfg.classifier.module._target_``
(``CAMClassifier``, ``TorchvisionCAMClassifier``), and must match ``cfg.classifier.module`` (depth or
arch, output stride, number of classes) with finite weights. The CAM files are recorded as made by
this checkpoint (its SHA-256) and these ``cfg.cam`` settings (:mod:`advcam_pl.pipeline.provenance`): other settings are
refused, naming the changed keys. A truncated CAM file is made again; a non-finite map is an error
naming the image. With ``data.skip_bad``, unreadable images are left out and recorded in
``cam_dir/skipped.json`` for the later stages.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from advcam_pl.advcam.analysis import ClimbAnalysis
from advcam_pl.advcam.cam_io import CAM_SUFFIX, cam_is_complete, cam_path
from advcam_pl.advcam.climb import ClimbOptions
from advcam_pl.advcam.writer import CAMPredictor, CAMWriter, ImagesPerSecondBar
from advcam_pl.pipeline.common import (
    build_trainer,
    data_root,
    list_ids,
    log_metrics,
    remove_broken_outputs,
    stage_loggers,
)
from advcam_pl.pipeline.provenance import Provenance, file_identity, settings_of
from advcam_pl.pipeline.skipped import (
    forget_skipped,
    log_skipped,
    read_skipped,
    record_skipped,
    without_skipped,
)
from advcam_pl.viz.stages import climb_strips, show_cam_maps, show_climb_curves

log = logging.getLogger(__name__)

# the keys of cfg.cam besides `climb` (AdvCAM's knobs, an advcam_pl.advcam.ClimbOptions)
STAGE_KEYS = ("name", "method", "scales", "batch_size", "analysis", "analysis_split", "analysis_thresholds",
              "analysis_noise_threshold")


def climb_options(cam: DictConfig) -> ClimbOptions | None:
    """``cfg.cam.climb`` instantiated (``None`` for plain CAM); a key of ``cfg.cam`` that is neither
    a stage key nor ``climb`` is an error that names it (AdvCAM's knobs moved under ``cam.climb``)."""
    unknown = sorted(set(cam) - set(STAGE_KEYS) - {"climb"})
    if unknown:
        fields = [f for f in unknown if f in ClimbOptions.__dataclass_fields__]
        hint = f"; AdvCAM's knobs live under cam.climb (e.g. cam.climb.{fields[0]})" if fields else ""
        raise ValueError(f"unknown key(s) {unknown} in cfg.cam (expected {list(STAGE_KEYS)} and climb){hint}")
    if cam.method != "advcam":
        return None
    if cam.get("climb") is None:
        raise ValueError("cam.method=advcam needs cam.climb (_target_: advcam_pl.advcam.ClimbOptions)")
    options = instantiate(cam.climb)
    if not isinstance(options, ClimbOptions):
        raise TypeError(f"cam.climb must instantiate advcam_pl.advcam.ClimbOptions, got {type(options).__name__}")
    return options


def analysis_path(cfg: DictConfig) -> Path:
    cam_dir = Path(cfg.artifacts.cam_dir)
    return cam_dir.with_name(cam_dir.name + "_analysis.json")


def _analysis_enabled(cfg: DictConfig) -> bool:
    enabled = bool(cfg.cam.get("analysis", False))
    if enabled and cfg.cam.method != "advcam":
        raise ValueError("cam.analysis=true follows the climb: it needs cam.method=advcam")
    return enabled


# What determines the maps besides the classifier: cfg.cam but its name, the batching, the analysis and
# the switches that only change speed (same results in fp32).
IGNORED = ("cam.name", "cam.batch_size", "cam.analysis", "cam.analysis_split", "cam.analysis_thresholds",
           "cam.analysis_noise_threshold", "cam.climb.impl", "cam.climb.chunk_size", "cam.climb.channels_last",
           "cam.climb.compile")
# classifier hyper-parameters that must match cfg.classifier.module (frozen vs trainable BN computes the
# same maps in eval mode, so norm may differ)
ARCHITECTURE = ("arch", "depth", "output_stride", "num_classes")


def provenance(cfg: DictConfig) -> Provenance:
    return Provenance("make_cam", Path(cfg.artifacts.cam_dir), settings_of(cfg, ["cam", "data.name"], IGNORED),
                      {"cam_ckpt": file_identity(cfg.artifacts.cam_ckpt)}, keep_both="a new cam.name",
                      patterns=(f"*{CAM_SUFFIX}",), companions=[analysis_path(cfg)])


def classifier_class(module: DictConfig) -> type:
    """The LightningModule class of ``cfg.classifier.module`` (its ``_target_``): a
    :class:`~advcam_pl.models.cam_training.CAMTrainingModule`."""
    from hydra.utils import get_class

    from advcam_pl.models.cam_training import CAMTrainingModule

    target = module.get("_target_", "advcam_pl.models.cam_classifier.CAMClassifier")
    cls = get_class(target)
    if not (isinstance(cls, type) and issubclass(cls, CAMTrainingModule)):
        raise TypeError(f"classifier.module._target_={target} is not a CAM classifier (a subclass of "
                        f"advcam_pl.models.cam_training.CAMTrainingModule)")
    return cls


def load_classifier(path: str | Path, expected: dict | None = None, module_cls: type | None = None):
    """The trained classifier of class ``module_cls`` (default ``CAMClassifier``; on CPU; never
    fetches ImageNet weights), read as data only; its hyper-parameters must match ``expected``
    (e.g. ``cfg.classifier.module``'s depth or arch) and its weights must be finite."""
    from advcam_pl.models.cam_classifier import CAMClassifier
    from advcam_pl.training.checkpoint import load_trained

    return load_trained(module_cls or CAMClassifier, path, what="CAM classifier checkpoint",
                        remedy="run stage train_cam first", expected=expected, configured_by="classifier.module",
                        pretrained=None)


def _predict(cfg: DictConfig, loggers, predictor: CAMPredictor, split: str, skip_ids: set[str],
             with_mask: bool, extra_callbacks=()) -> None:
    from advcam_pl.data.datamodules import InferenceDataModule

    datamodule = InferenceDataModule(
        data_root(cfg), split, scales=tuple(cfg.cam.scales), num_workers=cfg.data.num_workers,
        skip_bad=cfg.data.skip_bad, with_mask=with_mask, with_image_uint8=False, skip_ids=skip_ids,
        batch_size=int(cfg.cam.get("batch_size", 1)),
    )
    callbacks = [CAMWriter(cfg.artifacts.cam_dir), *extra_callbacks]
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(ImagesPerSecondBar())
    trainer = build_trainer(cfg, loggers, callbacks, use_distributed_sampler=False)
    trainer.predict(predictor, datamodule=datamodule, return_predictions=False)
    trainer.strategy.barrier()  # every process has written its shard before anyone counts


def _record_skipped(cfg: DictConfig, ids: list[str]) -> dict[str, str]:
    """Record (replacing the last run's record) the ids that still have no CAM file because
    ``data.skip_bad`` left them out, with the reason; returns them."""
    from advcam_pl.data.datamodules import find_bad_ids
    from advcam_pl.data.voc import VOCReader

    cam_dir = Path(cfg.artifacts.cam_dir)
    missing = [i for i in ids if not cam_is_complete(cam_path(cam_dir, i))]
    bad = find_bad_ids(VOCReader(data_root(cfg), cfg.data.infer_list), missing) if missing else {}
    forget_skipped(cam_dir)
    return record_skipped(cam_dir, bad)


def run(cfg: DictConfig) -> dict:
    cam_dir = Path(cfg.artifacts.cam_dir)
    climb = climb_options(cfg.cam)
    analysis = _analysis_enabled(cfg)
    ids = list_ids(cfg, cfg.data.infer_list)
    module = cfg.classifier.module
    model = load_classifier(cfg.artifacts.cam_ckpt, {k: module[k] for k in ARCHITECTURE if k in module},
                            classifier_class(module))
    provenance(cfg).begin(cfg)
    remove_broken_outputs(cam_dir, ids, CAM_SUFFIX)  # a truncated file is made again
    before = sum(cam_path(cam_dir, i).exists() for i in ids)
    metrics: dict = {}
    start = time.perf_counter()
    with stage_loggers(cfg, "make_cam") as loggers:
        if analysis:
            # every image of the analysis list is climbed again: the curves need its trajectory
            predictor = CAMPredictor(model, "advcam", cfg.cam.scales, climb, cam_dir, record_trajectory=True)
            tracker = ClimbAnalysis(
                analysis_path(cfg), num_maps=climb.num_maps(), thresholds=tuple(cfg.cam.analysis_thresholds),
                noise_threshold=float(cfg.cam.analysis_noise_threshold), tau=climb.tau,
            )
            _predict(cfg, loggers, predictor, cfg.cam.analysis_split, set(), True, [tracker])
        done = {i for i in ids if cam_path(cam_dir, i).exists()}
        predictor = CAMPredictor(model, cfg.cam.method, cfg.cam.scales, climb, cam_dir)
        if len(done) < len(ids):
            _predict(cfg, loggers, predictor, cfg.data.infer_list, done, False)
        seconds = time.perf_counter() - start
        strips = climb_strips(cfg, loggers)  # the dashboards' climb of a few images (cfg.viz; not timed), or None
        if strips is not None:
            predictor = CAMPredictor(model, "advcam", cfg.cam.scales, climb, cam_dir, record_trajectory=True)
            _predict(cfg, loggers, predictor, cfg.data.infer_list, set(ids) - set(strips.ids), False, [strips])
        show_cam_maps(cfg, loggers)
        after = sum(cam_path(cam_dir, i).exists() for i in ids)
        skipped = _record_skipped(cfg, ids) if cfg.data.skip_bad and after < len(ids) else {}
        metrics = {
            "cam": cfg.cam.name,
            "split": cfg.data.infer_list,
            "batch_size": int(cfg.cam.get("batch_size", 1)),
            "num_images": len(ids),
            "num_cam_files": after,
            "written": after - before,
            "seconds": seconds,
            "images_per_s": (after - before) / seconds if seconds > 0 else 0.0,
            "skipped_ids": sorted(skipped),
        }
        if analysis and analysis_path(cfg).is_file():
            curves = json.loads(analysis_path(cfg).read_text())
            for key in ("seed_miou", "noise_proportion", "amplification_non_discriminative"):
                if curves.get(key):
                    metrics[f"analysis_{key}_final"] = curves[key][-1]
            show_climb_curves(cfg, loggers, curves)
        metrics["objective"] = metrics["images_per_s"]
        log_metrics(loggers, {f"make_cam/{k}": v for k, v in metrics.items()})
    log.info("make_cam: %d CAM files in %s (%d new, %.2f images/s)", after, cam_dir, after - before,
             metrics["images_per_s"])
    if after < len(ids):
        message = f"make_cam: only {after} of {len(ids)} CAM files exist in {cam_dir}"
        if not cfg.data.skip_bad or after + len(skipped) < len(ids):
            raise RuntimeError(message)
        log_skipped("make_cam", skipped)
    return metrics


def is_done(cfg: DictConfig) -> bool:
    cam_dir = Path(cfg.artifacts.cam_dir)
    root = Path(cfg.data.root)
    if not cam_dir.is_dir() or not (root / "ImageSets" / "Segmentation").is_dir():
        return False
    if _analysis_enabled(cfg) and not analysis_path(cfg).is_file():
        return False
    ids = without_skipped(list_ids(cfg, cfg.data.infer_list), read_skipped(cam_dir))
    return all(cam_is_complete(cam_path(cam_dir, i)) for i in ids) and provenance(cfg).matches()
