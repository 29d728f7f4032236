"""Per-image cost of the refinement stages at VOC size: make_ir_label (two dense CRFs) and
make_sem_seg (IRN boundary map + random walk), on random inputs.

Inputs: a smooth random uint8 image of ``--size`` (default 375×500, H×W), 1–3 present classes,
random smooth CAMs (``high_res`` [n, H, W] and the stride-4 ``cam``, max-normalised), and an IRN
ResNet-50 with random weights (speed does not depend on the weights; nothing is downloaded).
Calls the library functions the stages call, with the stages' defaults (conf/irn/resnet50.yaml):

- ``ir_label``: ``refine.ir_label.ir_label`` — argmax at 0.35 and 0.15, a 10-iteration dense CRF
  each (single-threaded C++; the stage runs ``irn.num_workers`` processes);
- ``edge map``: ``IRN.edge_map`` — the image and its mirror, padded to 512, one forward;
- ``random walk``: ``refine.random_walk.sem_seg_labels`` — radius 5, β = 10, 2^8 steps on
  ``cam ** 1.5``, ``method="sparse"`` (``--dense`` adds IRN's dense T-squaring).

    python benchmarks/chain_speed.py                    # CPU, 1 thread
    python benchmarks/chain_speed.py --threads 2
    python benchmarks/chain_speed.py --device cuda      # the walk and the edge map on the GPU
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from advcam_pl.advcam.aggregate import strided_size
from advcam_pl.data.transforms import normalize
from advcam_pl.models.irn import IRN
from advcam_pl.refine.ir_label import ir_label
from advcam_pl.refine.random_walk import sem_seg_labels

VOC_TRAIN_AUG = 10_582


def smooth_maps(rng: np.random.Generator, n: int, size: tuple[int, int]) -> torch.Tensor:
    """``[n, H, W]`` smooth non-negative maps, each with its maximum at 1."""
    coarse = torch.from_numpy(rng.random((1, n, size[0] // 32 + 2, size[1] // 32 + 2), dtype=np.float32))
    maps = F.interpolate(coarse, size, mode="bicubic", align_corners=False)[0].clamp_min(0) ** 2
    return maps / maps.amax(dim=(1, 2), keepdim=True)


def make_inputs(rng: np.random.Generator, size: tuple[int, int]):
    height, width = size
    small = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    img = np.kron(small, np.ones((8, 8, 1), np.uint8))[:height, :width].copy()
    keys = np.sort(rng.choice(20, int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1])), replace=False))
    high_res = smooth_maps(rng, len(keys), size)
    cam = F.interpolate(high_res[None], strided_size(size, 4), mode="bilinear", align_corners=False)[0]
    return img, keys, high_res.numpy(), cam.numpy()


def timed(device: torch.device, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, its wall seconds and this process's CPU seconds (all threads)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, (time.perf_counter() - start, time.process_time() - cpu)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, nargs=2, default=(375, 500), metavar=("H", "W"))
    p.add_argument("--num-images", type=int, default=3)
    p.add_argument("--depth", type=int, default=50, help="IRN backbone depth")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (the CRF is single-threaded)")
    p.add_argument("--dense", action="store_true", help="also time IRN's dense walk (≈1.1 GB, slow on CPU)")
    p.add_argument("--no-crf", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    size = tuple(args.size)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    irn = IRN(depth=args.depth, pretrained=None).eval().to(device)
    inputs = [make_inputs(rng, size) for _ in range(args.num_images)]
    pad_to = 512

    def walk(cam, keys, edge, method):
        return sem_seg_labels(cam, keys, edge, size, radius=5, beta=10, exp_times=8, bg_threshold=0.25,
                              cam_power=1.5, method=method)

    # warm-up (allocator, path index cache, kernels), not timed
    img, keys, high_res, cam = inputs[0]
    edge = irn.edge_map(normalize(img).to(device), pad_to=pad_to)
    walk(cam, keys, edge, "sparse")

    times: dict[str, list[tuple[float, float]]] = {"ir_label (2 CRFs)": [], "edge map (IRN forward)": [], "random walk (sparse)": []}
    if args.dense:
        times["random walk (dense)"] = []
    for img, keys, high_res, cam in inputs:
        if not args.no_crf:
            times["ir_label (2 CRFs)"].append(timed(device, ir_label, img, high_res, keys, 0.35, 0.15)[1])
        edge, seconds = timed(device, irn.edge_map, normalize(img).to(device), pad_to=pad_to)
        times["edge map (IRN forward)"].append(seconds)
        times["random walk (sparse)"].append(timed(device, walk, cam, keys, edge, "sparse")[1])
        if args.dense:
            times["random walk (dense)"].append(timed(device, walk, cam, keys, edge, "dense")[1])

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    print(f"refinement per image — device {device} ({name}), torch {torch.__version__}, {args.threads} torch "
          f"thread(s); {args.num_images} images {size[0]}×{size[1]}, "
          f"{sum(len(k) for _, k, _, _ in inputs)} classes; IRN ResNet-{args.depth} random init")
    print("wall = elapsed time (inflated on a busy machine); CPU = this process's CPU time, i.e. the cost "
          "on one free core when torch runs 1 thread")
    print()
    print(f"| step | wall s/image (mean of {args.num_images}) | CPU s/image | h for {VOC_TRAIN_AUG:,} images "
          "at the CPU time, one core |")
    print("|---|---:|---:|---:|")
    for step, values in times.items():
        if values:
            wall, cpu = (float(np.mean(v)) for v in zip(*values))
            print(f"| {step} | {wall:.3g} | {cpu:.3g} | {VOC_TRAIN_AUG * cpu / 3600:.3g} |")


if __name__ == "__main__":
    main()
