"""What reduced precision costs in seed mIoU: AdvCAM maps in fp32 and under bf16 (or fp16) autocast.

On the demo's data and classifier (``experiment=demo``: the synthetic VOC-layout set, a ResNet-18
CAM classifier trained from scratch, T = 8, scales 1.0 / 0.5 — pass overrides to change any of
it): trains the classifier once (stage train_cam; skipped when its checkpoint exists), runs
make_cam and eval_cam per precision on ``data.eval_list`` (the images with GT masks), and prints
the seed mIoU at each one's best threshold, the seed mIoU of every precision at the fp32 best
threshold, and how far the CAM files are apart.

    python benchmarks/precision_seed_miou.py --out outputs/precision
    python benchmarks/precision_seed_miou.py --num-images 12    # the first 12 of the list (CPU time)
    python benchmarks/precision_seed_miou.py --out outputs/precision --precisions fp32 bf16 fp16 cam.climb.steps=27
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from advcam_pl.advcam import load_cam
from advcam_pl.data.voc import VOCReader
from advcam_pl.evaluation.miou import confusion_matrix, miou_from_confusion
from advcam_pl.evaluation.sweep import seed_labels
from advcam_pl.pipeline import run_stage
from advcam_pl.pipeline.common import data_root

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")
AUTOCAST = {"fp32": None, "bf16": "bf16", "fp16": "fp16"}


def compose_cfg(out: Path, precision: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=[
            "experiment=demo", "logger=none", f"paths.output_dir={out}", f"paths.work_dir={out}",
            f"data.root={out}/data/synthetic", "data.infer_list=${data.eval_list}",
            "cam.climb.steps=8",  # the demo's T (CPU time)
            f"cam.name=advcam_{precision}", f"cam.climb.autocast_dtype={AUTOCAST[precision] or 'null'}",
            *overrides,
        ])


def miou_at(cam_dir: Path, reader: VOCReader, threshold: float) -> float:
    confusion = 0
    for image_id in reader.ids:
        cam = load_cam(cam_dir / f"{image_id}.npz")
        confusion = confusion + confusion_matrix(seed_labels(cam["high_res"], cam["keys"], threshold),
                                                 reader.load_mask(image_id))
    return miou_from_confusion(confusion)


def cam_difference(a_dir: Path, b_dir: Path, ids: list[str]) -> tuple[float, float]:
    """Max and mean |high_res_a − high_res_b| over all images (maps are max-normalised to ≈1)."""
    worst, total, count = 0.0, 0.0, 0
    for image_id in ids:
        a, b = load_cam(a_dir / f"{image_id}.npz")["high_res"], load_cam(b_dir / f"{image_id}.npz")["high_res"]
        diff = np.abs(a - b)
        if diff.size:
            worst, total, count = max(worst, float(diff.max())), total + float(diff.sum()), count + diff.size
    return worst, total / max(count, 1)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/precision", help="data, checkpoint, maps and metrics go here")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=sorted(AUTOCAST))
    p.add_argument("--num-images", type=int, default=None,
                   help="only the first N images of data.eval_list (written as the list <eval_list>_first<N>)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. cam.climb.steps=27")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out).resolve()
    precisions = ["fp32"] + [x for x in args.precisions if x != "fp32"]
    overrides = list(args.overrides)
    if args.num_images:
        cfg = compose_cfg(out, "fp32", overrides)
        root = data_root(cfg)  # generated on first use
        subset = f"{cfg.data.eval_list}_first{args.num_images}"
        ids = VOCReader(root, cfg.data.eval_list).ids[: args.num_images]
        (root / "ImageSets" / "Segmentation" / f"{subset}.txt").write_text("".join(f"{i}\n" for i in ids))
        overrides.append(f"data.eval_list={subset}")

    rows = {}
    for precision in precisions:
        cfg = compose_cfg(out, precision, overrides)
        start = time.perf_counter()
        if precision == "fp32":
            run_stage("train_cam", cfg)
        run_stage("make_cam", cfg)
        seconds = time.perf_counter() - start
        metrics = run_stage("eval_cam", cfg, skip_done=False)
        rows[precision] = {"cfg": cfg, "seed": metrics["seed_miou"], "threshold": metrics["best_threshold"],
                           "seconds": seconds}

    base = rows["fp32"]
    reader = VOCReader(out / "data" / "synthetic", base["cfg"].data.eval_list)
    cam = base["cfg"].cam
    print(f"seed mIoU on the synthetic '{reader.split}' list ({len(reader.ids)} images with masks); "
          f"classifier {base['cfg'].classifier.name}, T = {cam.climb.steps}, scales {list(cam.scales)}, "
          f"batch_size {cam.batch_size}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print()
    print("| precision | seed mIoU (best thr.) | best thr. | seed mIoU at fp32's thr. | Δ vs fp32 at fp32's thr. "
          "| max abs. Δ high_res | mean abs. Δ high_res | make_cam s (incl. training for fp32) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base_dir = Path(base["cfg"].artifacts.cam_dir)
    base_at = miou_at(base_dir, reader, base["threshold"])
    for precision, row in rows.items():
        cam_dir = Path(row["cfg"].artifacts.cam_dir)
        at_base = miou_at(cam_dir, reader, base["threshold"])
        worst, mean = cam_difference(cam_dir, base_dir, reader.ids)
        print(f"| {precision} | {100 * row['seed']:.2f} | {row['threshold']:.2f} | {100 * at_base:.2f} "
              f"| {100 * (at_base - base_at):+.2f} | {worst:.3g} | {mean:.3g} | {row['seconds']:.0f} |")


if __name__ == "__main__":
    main()
