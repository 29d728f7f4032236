"""What each stage shows on the dashboards, for the few images of ``cfg.viz`` (one call per stage).

- ``make_cam``: ``maps/<id>`` (image | CAM | AdvCAM | GT) and ``climb/<id>`` (the successive maps of
  the climb, one row per class: the paper's Fig. 1d / Fig. 7) from a climb of those images only
  (:class:`ClimbStrips`); plain CAM: ``maps/<id>`` (image | CAM | GT) from the CAM files; with
  ``cam.analysis``, the Fig. 6 / Fig. 2 curves as line plots (:func:`show_climb_curves`);
- ``eval_cam``: ``seed/<id>`` (image | seed at the best threshold | GT), the mIoU-vs-threshold curve,
  the per-class IoU table (:func:`show_eval_cam`);
- ``make_ir_label`` / ``make_sem_seg`` / ``eval_seg`` / ``eval_semi``: ``<kind>/<id>`` (image | label
  map | GT) from the PNGs the stage wrote (:func:`show_label_maps`);
- every evaluation: ``per_class_iou`` as a table (:func:`show_iou`).

The images are ``cfg.viz.ids`` where given (each stage shows those in the list it works on), else
``cfg.viz.num_images`` evenly spaced over that list (``data.eval_list`` for the weak chain,
``data.val_list`` for the segmentation networks). Nothing is computed when ``cfg.viz.enabled`` is
false or no logger takes media (``logger=none``): in particular make_cam records no trajectory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback

from advcam_pl.data.voc import CLASS_NAMES, CLASS_NAMES_BG, VOCReader
from advcam_pl.viz.media import MediaLogger
from advcam_pl.viz.render import climb_strip, overlay_map, overlay_mask, row, strip_steps, strongest

log = logging.getLogger(__name__)


def media_for(cfg: DictConfig, loggers: Sequence, stage: str) -> MediaLogger | None:
    """The stage's :class:`MediaLogger`, or None when ``cfg.viz`` is off or no logger takes media."""
    viz = cfg.get("viz")
    if viz is None or not viz.get("enabled", False):
        return None
    media = MediaLogger(loggers, stage)
    return media if media.active else None


def pick_ids(cfg: DictConfig, ids: Sequence[str]) -> list[str]:
    """The images to show out of a stage's list ``ids``: those of ``cfg.viz.ids`` in it, or
    ``cfg.viz.num_images`` evenly spaced over it (first and last included)."""
    wanted = cfg.viz.get("ids")
    if wanted:
        present = set(ids)
        return [str(i) for i in wanted if str(i) in present]
    count = min(int(cfg.viz.get("num_images", 0)), len(ids))
    if count <= 0:
        return []
    return [ids[int(round(k))] for k in np.linspace(0, len(ids) - 1, count)]


def _gt(reader: VOCReader, image_id: str) -> np.ndarray | None:
    return reader.load_mask(image_id) if reader.has_mask(image_id) else None


def _panels(reader: VOCReader, image_id: str, maps: Mapping[str, np.ndarray], alpha: float) -> np.ndarray:
    """image | one heatmap per entry of ``maps`` (``[H, W]`` in [0, 1]) | GT when there is one."""
    image = reader.load_image(image_id)
    panels, captions = [image], ["image"]
    for name, values in maps.items():
        panels.append(overlay_map(image, values, alpha))
        captions.append(name)
    gt = _gt(reader, image_id)
    if gt is not None:
        panels.append(overlay_mask(image, gt, alpha))
        captions.append("GT")
    return row(panels, captions)


def _label_panels(reader: VOCReader, image_id: str, name: str, labels: np.ndarray, alpha: float) -> np.ndarray:
    """image | ``labels`` (``[H, W]`` class indices) | GT when there is one."""
    image = reader.load_image(image_id)
    panels, captions = [image, overlay_mask(image, labels, alpha)], ["image", name]
    gt = _gt(reader, image_id)
    if gt is not None:
        panels.append(overlay_mask(image, gt, alpha))
        captions.append("GT")
    return row(panels, captions)


# -- make_cam -------------------------------------------------------------------------------------


class ClimbStrips(Callback):
    """Renders the climbs of ``ids`` from ``CAMPredictor(record_trajectory=True)`` outputs:
    ``maps/<id>`` (image | CAM = step 0 | AdvCAM = last step | GT) and ``climb/<id>``. Under DDP each
    process climbs its shard of ``ids`` and only rank 0's pictures are logged."""

    def __init__(self, media: MediaLogger, reader: VOCReader, ids: Sequence[str], num_steps: int,
                 alpha: float = 0.5):
        self.media, self.reader, self.ids = media, reader, list(ids)
        self.num_steps, self.alpha = int(num_steps), float(alpha)
        self.shown: list[str] = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        from advcam_pl.advcam.writer import predictions

        for prediction in predictions(outputs):
            if prediction.image_id in self.ids:
                self.show(prediction.image_id, prediction.trajectory, prediction.arrays["keys"])

    def show(self, image_id: str, trajectory, keys: np.ndarray) -> None:
        size = self.reader.load_image(image_id).shape[:2]
        if trajectory is None:  # no class in the image: nothing was climbed
            high_res = np.zeros((1, 0, *size), np.float32)
        else:
            high_res = trajectory.high_res.float().numpy()  # [J, n, H, W]
        maps = {"CAM": strongest(high_res[0], size), "AdvCAM": strongest(high_res[-1], size)}
        self.media.image(f"maps/{image_id}", _panels(self.reader, image_id, maps, self.alpha), image_id)
        steps = strip_steps(high_res.shape[0], self.num_steps)
        names = [CLASS_NAMES[k] for k in np.asarray(keys, dtype=np.int64)]
        image = self.reader.load_image(image_id)
        self.media.image(f"climb/{image_id}", climb_strip(image, high_res, names, steps, self.alpha),
                         f"{image_id}: maps of x^0 … x^t")
        self.shown.append(image_id)


def climb_strips(cfg: DictConfig, loggers: Sequence) -> ClimbStrips | None:
    """make_cam's strip callback for the ``cfg.viz`` images of ``data.eval_list`` (that are in
    ``data.infer_list``), or None: viz off, no media logger, or plain CAM (nothing to climb)."""
    media = media_for(cfg, loggers, "make_cam")
    if media is None or cfg.cam.method != "advcam":
        return None
    reader = VOCReader(cfg.data.root, cfg.data.infer_list)
    infer = set(reader.ids)
    ids = [i for i in pick_ids(cfg, VOCReader(cfg.data.root, cfg.data.eval_list).ids) if i in infer]
    if not ids:
        return None
    return ClimbStrips(media, reader, ids, int(cfg.viz.get("strip_steps", 6)), float(cfg.viz.get("alpha", 0.5)))


def show_cam_maps(cfg: DictConfig, loggers: Sequence) -> None:
    """Plain CAM: ``maps/<id>`` (image | CAM | GT) from the CAM files (AdvCAM: :class:`ClimbStrips`)."""
    media = media_for(cfg, loggers, "make_cam")
    if media is None or cfg.cam.method == "advcam":
        return
    from advcam_pl.advcam.cam_io import cam_path, load_cam

    reader = VOCReader(cfg.data.root, cfg.data.eval_list)
    for image_id in pick_ids(cfg, reader.ids):
        path = cam_path(cfg.artifacts.cam_dir, image_id)
        if path.is_file():
            cam = load_cam(path)
            size = reader.load_image(image_id).shape[:2]
            maps = {cfg.cam.name: strongest(cam["high_res"], size)}
            media.image(f"maps/{image_id}", _panels(reader, image_id, maps, float(cfg.viz.alpha)), image_id)


# the curves of advcam_pl.advcam.analysis, by figure: (name, title, series)
CLIMB_CURVES = (
    ("fig6a_seed_miou", "seed mIoU vs adversarial iteration (Fig. 6a)", ("seed_miou",)),
    ("fig6b_noise", "proportion of noise vs adversarial iteration (Fig. 6b)", ("noise_proportion",)),
    ("fig2_amplification", "pixel amplification ratio (Fig. 2)",
     ("amplification_discriminative", "amplification_non_discriminative")),
)


def show_climb_curves(cfg: DictConfig, loggers: Sequence, curves: Mapping) -> None:
    """The Fig. 6 / Fig. 2 curves of a :class:`~advcam_pl.advcam.analysis.ClimbAnalysis` summary as
    line plots over the step ``t`` (``analysis/<figure>``)."""
    media = media_for(cfg, loggers, "make_cam")
    if media is None:
        return
    for name, title, keys in CLIMB_CURVES:
        series = {k: curves[k] for k in keys if curves.get(k)}
        if series:
            media.lines(f"analysis/{name}", "t", curves["steps"], series, title)


# -- evaluations and label maps -------------------------------------------------------------------


def show_iou(cfg: DictConfig, loggers: Sequence, stage: str, metrics: Mapping) -> None:
    """``per_class_iou`` (and its ``_crf`` / ``_no_crf`` variants, where present) as one table:
    ``class, iou[, iou_crf | iou_no_crf]``."""
    media = media_for(cfg, loggers, stage)
    if media is None or not metrics.get("per_class_iou"):
        return
    variants = [k for k in ("per_class_iou", "per_class_iou_no_crf", "per_class_iou_crf") if metrics.get(k)]
    columns = ["class", *(k.replace("per_class_", "") for k in variants)]
    rows = [[name, *(metrics[k].get(name) for k in variants)] for name in CLASS_NAMES_BG]
    media.table("per_class_iou", columns, rows)


def show_eval_cam(cfg: DictConfig, loggers: Sequence, metrics: Mapping, ids: Sequence[str]) -> None:
    """eval_cam: ``seed/<id>`` at the best threshold for the viz images among ``ids`` (the evaluated
    ones), the mIoU-vs-threshold curve, the per-class IoU table."""
    media = media_for(cfg, loggers, "eval_cam")
    if media is None:
        return
    from advcam_pl.advcam.cam_io import cam_path, load_cam
    from advcam_pl.evaluation.sweep import seed_labels

    reader = VOCReader(cfg.data.root, cfg.data.eval_list)
    threshold = float(metrics["best_threshold"])
    for image_id in pick_ids(cfg, list(ids)):
        cam = load_cam(cam_path(cfg.artifacts.cam_dir, image_id))
        seed = seed_labels(cam["high_res"], cam["keys"], threshold)
        media.image(f"seed/{image_id}", _label_panels(reader, image_id, f"seed @{threshold:.2f}", seed,
                                                       float(cfg.viz.alpha)), image_id)
    curve = metrics["curve"]
    media.lines("miou_vs_threshold", "threshold", curve["thresholds"], {cfg.cam.name: curve["miou"]},
                f"seed mIoU of {cfg.cam.name} vs background threshold")
    show_iou(cfg, loggers, "eval_cam", metrics)


def show_label_maps(cfg: DictConfig, loggers: Sequence, stage: str, kind: str, folder: str | Path,
                    split: str) -> None:
    """``<kind>/<id>`` (image | ``folder/<id>.png`` | GT) for the viz images of list ``split`` whose
    PNG exists (seeds of make_ir_label, pseudo masks, predictions)."""
    media = media_for(cfg, loggers, stage)
    if media is None:
        return
    from advcam_pl.data.voc import read_mask_file

    reader = VOCReader(cfg.data.root, split)
    for image_id in pick_ids(cfg, reader.ids):
        path = Path(folder) / f"{image_id}.png"
        if path.is_file():
            media.image(f"{kind}/{image_id}", _label_panels(reader, image_id, kind.replace("_", " "),
                                                            read_mask_file(path), float(cfg.viz.alpha)), image_id)


# -- the drivers' summary tables ------------------------------------------------------------------


def log_summary(cfg: DictConfig, name: str, table) -> None:
    """A summary table of :mod:`advcam_pl.pipeline.report` (a :class:`~advcam_pl.pipeline.report.Table`)
    through the loggers of a ``report`` run: a W&B table ``report/<name>``, ``csv/report/media/<name>.csv``."""
    viz = cfg.get("viz")
    if viz is None or not viz.get("enabled", False) or not cfg.get("logger"):
        return
    from advcam_pl.pipeline.common import stage_loggers

    with stage_loggers(cfg, "report") as loggers:
        media = media_for(cfg, loggers, "report")
        if media is not None:
            media.table(name, *table.records())
