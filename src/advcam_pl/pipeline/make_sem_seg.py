"""Stage make_sem_seg: CAMs + IRN boundaries → random walk → pseudo masks.

Reads ``cfg.artifacts.irn_ckpt``, ``cfg.artifacts.cam_dir/<id>.npz`` (stride-4 ``cam``, ``keys``) and
the images of ``cfg.data.infer_list``; writes ``cfg.artifacts.sem_seg_dir/<id>.png`` (VOC palette).
Random-walk settings ``cfg.irn.random_walk``. Runs on one GPU when ``cfg.trainer.accelerator`` allows
and one is visible, else on the CPU (the sparse walk keeps a 500×375 image within tens of MB).
Images whose PNG exists are skipped.
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
from advcam_pl.io import atomic_save_palette_png
from advcam_pl.models.irn import IRN
from advcam_pl.pipeline.common import (
    all_written,
    data_root,
    list_ids,
    log_metrics,
    missing_outputs,
    require_cam_files,
    stage_loggers,
)
from advcam_pl.refine.random_walk import sem_seg_labels

log = logging.getLogger(__name__)


def is_done(cfg: DictConfig) -> bool:
    return all_written(cfg.artifacts.sem_seg_dir, list_ids(cfg, cfg.data.infer_list), ".png")


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
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def run(cfg: DictConfig) -> dict:
    root = data_root(cfg)
    reader = VOCReader(root, cfg.data.infer_list)
    cam_dir, out_dir = Path(cfg.artifacts.cam_dir), Path(cfg.artifacts.sem_seg_dir)
    todo = missing_outputs(out_dir, reader.ids, ".png")
    require_cam_files(cam_dir, todo)
    log.info("make_sem_seg: %d of %d images to do", len(todo), len(reader.ids))
    rw = cfg.irn.random_walk
    pad_to = int(cfg.irn.train.crop_size) if rw.get("pad_to_crop", True) else None
    device = inference_device(cfg)
    # Our own checkpoint (hyper-parameters are plain Python objects): weights_only=False is safe.
    model = IRN.load_from_checkpoint(cfg.artifacts.irn_ckpt, map_location="cpu", weights_only=False)
    model = model.eval().to(device)
    loader = DataLoader(_Images(reader, todo), batch_size=None, shuffle=False,
                        num_workers=int(cfg.data.get("num_workers", 0)))
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in tqdm(loader, total=len(todo), desc="make_sem_seg"):
        image = item["image"].to(device)
        edge = model.edge_map(image, pad_to=pad_to)
        cam = load_cam(cam_path(cam_dir, item["id"]))
        labels = sem_seg_labels(
            cam["cam"], cam["keys"], edge, tuple(image.shape[-2:]),
            radius=int(rw.radius), beta=float(rw.beta), exp_times=int(rw.exp_times),
            bg_threshold=float(rw.sem_seg_bg_threshold), cam_power=float(rw.cam_power),
            method=str(rw.get("method", "sparse")),
        )
        atomic_save_palette_png(out_dir / f"{item['id']}.png", labels)
    metrics = {"num_images": len(reader.ids), "num_written": len(todo)}
    with stage_loggers(cfg, "make_sem_seg") as loggers:
        log_metrics(loggers, {f"sem_seg/{k}": v for k, v in metrics.items()})
    return metrics
