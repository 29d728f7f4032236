"""Stage make_sem_seg: CAMs + IRN boundaries → random walk → pseudo masks.

Reads ``cfg.artifacts.irn_ckpt``, ``cfg.artifacts.cam_dir/<id>.npz`` (stride-4 ``cam``, ``keys``) and
the images of ``cfg.data.infer_list``; writes ``cfg.artifacts.sem_seg_dir/<id>.png`` (VOC palette).
Random-walk settings ``cfg.irn.random_walk`` (``auto`` ones resolved by
:mod:`advcam_pl.pipeline.resolve_auto`). Runs on one GPU when ``cfg.trainer.accelerator`` is
``gpu``/``cuda`` (an error without one, as in every stage) or ``auto`` with one visible, else on the
CPU (the sparse walk keeps a 500×375 image within tens of MB). Images whose PNG is complete are
skipped; images recorded as skipped in the CAM folder (and, with ``data.skip_bad``, unreadable
ones) are left out and recorded in ``sem_seg_dir/skipped.json``. The IRN checkpoint must match
``cfg.irn.module`` and be finite; a non-finite boundary map is an error naming the image.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from advcam_pl.advcam.cam_io import cam_path, load_cam
from advcam_pl.data.transforms import normalize
from advcam_pl.data.voc import VOCReader
from advcam_pl.errors import NonFiniteError
from advcam_pl.io import atomic_save_palette_png
from advcam_pl.models.irn import IRN
from advcam_pl.pipeline.common import (
    all_written,
    data_root,
    images_to_do,
    list_ids,
    log_metrics,
    require_cam_files,
    stage_loggers,
)
from advcam_pl.pipeline.provenance import Provenance, file_identity, folder_identity, settings_of
from advcam_pl.pipeline.resolve_auto import random_walk_settings, resolved_settings
from advcam_pl.pipeline.skipped import read_skipped, without_skipped
from advcam_pl.refine.random_walk import sem_seg_labels
from advcam_pl.training.checkpoint import load_trained
from advcam_pl.viz.stages import show_label_maps

log = logging.getLogger(__name__)

SETTINGS = ("irn.random_walk", "irn.train.crop_size", "data.name")  # besides the CAMs and the IRN
ARCHITECTURE = ("depth", "edge_channels", "dp_width")  # IRN hyper-parameters that must match cfg.irn.module


def provenance(cfg: DictConfig) -> Provenance:
    inputs = {"cam_dir": folder_identity(cfg.artifacts.cam_dir), "irn_ckpt": file_identity(cfg.artifacts.irn_ckpt)}
    settings = {**settings_of(cfg, SETTINGS), **resolved_settings(cfg, SETTINGS)}
    return Provenance("make_sem_seg", Path(cfg.artifacts.sem_seg_dir), settings, inputs,
                      keep_both="a new cam.name", patterns=("*.png",))


def skipped_ids(cfg: DictConfig) -> dict[str, str]:
    return {**read_skipped(cfg.artifacts.cam_dir), **read_skipped(cfg.artifacts.sem_seg_dir)}


def is_done(cfg: DictConfig) -> bool:
    ids = without_skipped(list_ids(cfg, cfg.data.infer_list), skipped_ids(cfg))
    return all_written(cfg.artifacts.sem_seg_dir, ids, ".png") and provenance(cfg).matches()


def load_irn(cfg: DictConfig) -> IRN:
    """The trained IRN of ``cfg.artifacts.irn_ckpt`` (read as data only; must match ``cfg.irn.module``)."""
    module = cfg.irn.module
    return load_trained(IRN, cfg.artifacts.irn_ckpt, what="IRN checkpoint", remedy="run stage train_irn",
                        expected={k: module[k] for k in ARCHITECTURE if k in module}, configured_by="irn.module")


class _Images(Dataset):
    """``{"id", "image": normalised float [3, H, W]}`` for the listed ids (loaded in workers)."""

    def __init__(self, reader: VOCReader, ids: list[str]):
        self.reader, self.ids = reader, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        image_id = self.ids[index]
        return {"id": image_id, "image": normalize(self.reader.load_image(image_id))}


def inference_device(cfg: DictConfig) -> torch.device:
    """``cfg.trainer.accelerator`` as Lightning reads it: ``gpu``/``cuda`` needs a GPU (an error
    without one), ``auto`` takes one when visible, anything else is the CPU."""
    from advcam_pl.config_checks import check_accelerator

    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    check_accelerator(accelerator)
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def run(cfg: DictConfig) -> dict:
    root = data_root(cfg)
    reader = VOCReader(root, cfg.data.infer_list)
    cam_dir, out_dir = Path(cfg.artifacts.cam_dir), Path(cfg.artifacts.sem_seg_dir)
    device = inference_device(cfg)
    model = load_irn(cfg).eval().to(device)
    provenance(cfg).begin(cfg)
    todo, skipped = images_to_do("make_sem_seg", reader, out_dir, ".png", cam_dir, bool(cfg.data.skip_bad))
    require_cam_files(cam_dir, todo)
    log.info("make_sem_seg: %d of %d images to do", len(todo), len(reader.ids))
    rw = cfg.irn.random_walk
    settings = random_walk_settings(cfg)
    pad_to = int(cfg.irn.train.crop_size) if rw.get("pad_to_crop", True) else None
    loader = DataLoader(_Images(reader, todo), batch_size=None, shuffle=False,
                        num_workers=int(cfg.data.get("num_workers", 0)))
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in tqdm(loader, total=len(todo), desc="make_sem_seg"):
        image = item["image"].to(device)
        edge = model.edge_map(image, pad_to=pad_to)
        if not torch.isfinite(edge).all():
            raise NonFiniteError(f"make_sem_seg: the IRN boundary map of image {item['id']} holds NaN or infinite "
                                 f"values ({cfg.artifacts.irn_ckpt}); retrain IRN (train_irn) with a lower lr")
        cam = load_cam(cam_path(cam_dir, item["id"]))
        labels = sem_seg_labels(cam["cam"], cam["keys"], edge, tuple(image.shape[-2:]), **settings)
        atomic_save_palette_png(out_dir / f"{item['id']}.png", labels)
    metrics = {"num_images": len(reader.ids), "num_written": len(todo), "skipped_ids": sorted(skipped),
               "exp_times": settings["exp_times"], "bg_threshold": settings["bg_threshold"]}
    with stage_loggers(cfg, "make_sem_seg") as loggers:
        log_metrics(loggers, {f"sem_seg/{k}": v for k, v in metrics.items()})
        show_label_maps(cfg, loggers, "make_sem_seg", "pseudo_mask", out_dir, cfg.data.eval_list)
    return metrics
