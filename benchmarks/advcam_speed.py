"""AdvCAM speed, memory and accuracy: the official-structure loop beside the fast one, image by
image and batched over images, in fp32, TF32 and bf16.

Same model (ResNet-50, output stride 16, random init — speed does not depend on the weights), same
images (random uint8, resized per scale with PIL bicubic and normalised, as InferenceDataModule
does), same classes; every variant runs in this process, one after the other, so the speed-up
ratios compare like with like.

Variants (``--modes``, ``--precisions``):
- ``reference fp32``: ``impl="reference"`` (the official loop: class by class, a batch of the two
  views, second backward for Grad-CAM, parameter gradients), strict IEEE fp32 (``tf32=False``);
  the baseline of the speed-up and of the deviation.
- ``single``: ``adv_climb`` per image — all classes × both views of a scale in one batch.
- ``batched``: images of one size in groups of ``--batch-size`` (``size_buckets``, as make_cam's
  datamodule) through ``adv_climb_batch`` — images × classes × views in one batch.
- precisions: ``fp32`` (``tf32=False``), ``tf32`` (``tf32=True``; CUDA only), ``bf16``
  (``autocast_dtype="bf16"``).

Columns: images/s; minutes projected for VOC train_aug (10,582 images) at that rate; speed-up over
``reference fp32``; peak memory; deviation = max over images of max |high_res − reference| /
max |reference| (on the images both ran); achieved TFLOP/s and its fraction of the device's peak.
FLOPs are the *useful* work, the same for every variant: per climbing step, the forward and the
gradient to the input of the two views of each (image, class) pair (the last map: forward only),
counted with ``torch.utils.flop_counter.FlopCounterMode`` on one view per (size, scale). The
reference's extra work (parameter gradients, second backward) is not counted.

    python benchmarks/advcam_speed.py                        # CPU defaults (small; see the header)
    python benchmarks/advcam_speed.py --device cuda          # VOC-like workload, T = 27, 4 scales
    benchmarks/gpu_check.sh                                  # the complete GPU measurement
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from advcam_pl.advcam import ClimbOptions, adv_climb, adv_climb_batch, modes
from advcam_pl.advcam.cam import class_maps
from advcam_pl.advcam.views import scale_steps
from advcam_pl.data.datamodules import size_buckets
from advcam_pl.data.transforms import multiscale_images, scaled_size
from advcam_pl.models.cam_classifier import CAMClassifier

VOC_TRAIN_AUG = 10_582
CPU_DEFAULTS = {"workload": "fixed", "size": (96, 128), "steps": 3, "num_images": 2, "scales": (1.0, 0.5)}
GPU_DEFAULTS = {"workload": "voc", "size": (375, 500), "steps": 27, "num_images": 24, "scales": (1.0, 0.5, 1.5, 2.0)}
# (H, W) → share of a VOC-like workload: "mostly 500×375 / 375×500 with some others". Approximate
# shares chosen to look like VOC 2012 (landscape 375×500 dominates), not counted from the dataset.
VOC_LIKE_SIZES = {
    (375, 500): 0.60, (500, 375): 0.20, (333, 500): 0.07, (500, 333): 0.03,
    (334, 500): 0.03, (400, 500): 0.03, (366, 500): 0.02, (500, 400): 0.02,
}  # fmt: skip
# 1, 2 or 3 present classes: 1.5 on average (VOC train_aug: 16,458 (image, class) pairs / 10,582)
CLASS_COUNT_SHARES = {1: 0.6, 2: 0.3, 3: 0.1}
# Dense peak TFLOP/s by precision (NVIDIA data sheets, without sparsity), matched on the device name.
PEAK_TFLOPS = {
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.0},
    "H100": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},  # SXM
    "H200 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.0},
    "H200": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},  # SXM
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
}


@dataclass
class Variant:
    name: str
    impl: str = "fast"
    batched: bool = False
    precision: str = "fp32"  # fp32 | tf32 | bf16
    channels_last: bool = False

    def options(self, args) -> ClimbOptions:
        fast = self.impl == "fast"
        return ClimbOptions(
            steps=args.steps, impl=self.impl, chunk_size=args.chunk_size if fast else None,
            autocast_dtype="bf16" if self.precision == "bf16" else None,
            tf32={"fp32": False, "tf32": True, "bf16": None}[self.precision],
            channels_last=self.channels_last, compile=args.compile and fast,
        )


@dataclass
class Image:
    index: int
    size: tuple[int, int]
    scaled: list[torch.Tensor]  # one normalised [3, h_s, w_s] per scale
    classes: torch.Tensor  # [n]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workload", choices=("fixed", "voc"),
                   help="fixed: --num-images of --size with --classes-per-image; voc: VOC-like sizes and "
                        "1-3 classes (default: fixed on CPU, voc on GPU)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="image size of the fixed workload")
    p.add_argument("--size-scale", type=float, default=1.0, help="multiply the VOC-like sizes (small CPU runs)")
    p.add_argument("--steps", type=int, help="T (default: 3 on CPU, 27 on GPU)")
    p.add_argument("--num-images", type=int, help="images per variant (default: 2 on CPU, 24 on GPU)")
    p.add_argument("--classes-per-image", type=int, default=2, help="fixed workload only")
    p.add_argument("--scales", type=float, nargs="+", help="default: 1.0 0.5 on CPU, 1.0 0.5 1.5 2.0 on GPU")
    p.add_argument("--depth", type=int, default=50, help="ResNet depth of the CAM classifier")
    p.add_argument("--batch-size", type=int, default=8, help="images per batch of the batched variants")
    p.add_argument("--chunk-size", type=int, default=None, help="(image, class) climbs per network batch")
    p.add_argument("--modes", nargs="+", default=["single", "batched"], choices=("single", "batched"))
    p.add_argument("--precisions", nargs="+", default=["fp32", "tf32", "bf16"], choices=("fp32", "tf32", "bf16"),
                   help="tf32 is skipped on CPU (no effect there), bf16 where unsupported")
    p.add_argument("--channels-last", action="store_true", help="also run the fast variants channels-last")
    p.add_argument("--compile", action="store_true", help="torch.compile the fast variants' network")
    p.add_argument("--reference-images", type=int, default=None,
                   help="images the reference loop runs (the first ones; default: all)")
    p.add_argument("--no-reference", action="store_true", help="skip the (slow) reference loop")
    p.add_argument("--no-bf16", action="store_true", help="same as leaving bf16 out of --precisions")
    p.add_argument("--variant-seconds", type=float, default=None,
                   help="start no new image / batch of a variant after this many seconds (time budget)")
    p.add_argument("--peak-tflops", nargs="+", default=None, metavar="[PRECISION=]TFLOPS",
                   help="device peak, e.g. 989.4 or fp32=66.9 tf32=494.7 bf16=989.4 (default: known for "
                        f"{', '.join(PEAK_TFLOPS)}; none on CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    defaults = GPU_DEFAULTS if args.device.startswith("cuda") else CPU_DEFAULTS
    args.workload = args.workload or defaults["workload"]
    args.size = tuple(args.size or defaults["size"])
    args.steps = args.steps or defaults["steps"]
    args.num_images = args.num_images or defaults["num_images"]
    args.scales = tuple(args.scales or defaults["scales"])
    if args.no_bf16:
        args.precisions = [p for p in args.precisions if p != "bf16"]
    return args


def peak_tflops(args, device: torch.device, name: str) -> dict[str, float]:
    if args.peak_tflops:
        if len(args.peak_tflops) == 1 and "=" not in args.peak_tflops[0]:
            return dict.fromkeys(("fp32", "tf32", "bf16"), float(args.peak_tflops[0]))
        return {k: float(v) for k, v in (item.split("=", 1) for item in args.peak_tflops)}
    if device.type != "cuda":
        return {}
    for key, values in PEAK_TFLOPS.items():  # most specific names first
        if all(part in name for part in key.split()):
            return values
    return {}


def make_workload(args) -> list[Image]:
    rng = np.random.default_rng(args.seed)
    if args.workload == "voc":
        shapes = list(VOC_LIKE_SIZES)
        picks = rng.choice(len(shapes), size=args.num_images, p=list(VOC_LIKE_SIZES.values()))
        sizes = [scaled_size(*shapes[i], args.size_scale) for i in picks]
        counts = rng.choice(list(CLASS_COUNT_SHARES), size=args.num_images, p=list(CLASS_COUNT_SHARES.values()))
    else:
        sizes = [args.size] * args.num_images
        counts = [args.classes_per_image] * args.num_images
    images = []
    for index, ((height, width), count) in enumerate(zip(sizes, counts)):
        # smooth random image: low-resolution noise upsampled, so the CAMs have some structure
        small = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        img = np.kron(small, np.ones((8, 8, 1), np.uint8))[:height, :width]
        classes = torch.as_tensor(np.sort(rng.choice(20, int(count), replace=False)))
        images.append(Image(index, (height, width), multiscale_images(img, args.scales), classes))
    return images


def release_freed_memory() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``), so that the RSS before a
    variant does not hide memory the previous variant freed but the allocator kept."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory of one variant: CUDA ``max_memory_allocated``; on CPU the growth of the process
    RSS above its value before the variant (after ``malloc_trim``), sampled every 2 ms from
    /proc/self/statm."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = self.base = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.002)

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            gc.collect()
            release_freed_memory()
            self.base = self.peak = self.rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.functional.conv2d(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3))
        return True
    except RuntimeError:
        return False


def count_flops(model, shape: tuple[int, int], device: torch.device, backward: bool) -> int:
    """FLOPs of one view ``[1, 3, h, w]`` through the network (and, with ``backward``, of its
    gradient to the input, parameters frozen as in the fast climb)."""
    x = torch.zeros((1, 3, *shape), device=device, requires_grad=backward)
    with modes.eval_mode(model), modes.frozen_parameters(model), FlopCounterMode(display=False) as counter:
        with torch.set_grad_enabled(backward):
            s = class_maps(model, x)
            if backward:
                s.float().sum().backward()  # only x needs a gradient: the parameters are frozen
    return counter.get_total_flops()


def useful_flops(model, images: list[Image], args, device: torch.device) -> list[int]:
    """Per image: Σ_scales 2 views · n classes · ((maps − 1)·(forward + input gradient) + forward)."""
    cache: dict[tuple[tuple[int, int], bool], int] = {}

    def flops(shape, backward):
        if (shape, backward) not in cache:
            cache[shape, backward] = count_flops(model, shape, device, backward)
        return cache[shape, backward]

    opts = ClimbOptions(steps=args.steps)
    totals = []
    for image in images:
        total = 0
        for scale, scaled in zip(args.scales, image.scaled):
            shape = tuple(scaled.shape[-2:])
            maps = opts.num_maps(scale_steps(args.steps, scale, opts.half_steps_at_half_scale))
            total += 2 * len(image.classes) * ((maps - 1) * flops(shape, True) + flops(shape, False))
        totals.append(total)
    return totals


def run_variant(model, images: list[Image], variant: Variant, args, device):
    """Returns images/s, peak MiB, ``{image index: high_res}``, seconds, indices of the images done."""
    opts = variant.options(args)
    first = images[0]
    # warm-up on a small image (kernel selection, allocator), not timed
    warm = [img[:, :64, :64].to(device) for img in first.scaled[:1]]
    adv_climb(model, warm, first.classes[:1], ClimbOptions.build(opts, steps=2), scales=args.scales[:1],
              size=tuple(warm[0].shape[-2:]))
    if variant.batched:
        keys = [tuple(tuple(s.shape[-2:]) for s in image.scaled) for image in images]
        groups = [[images[i] for i in batch] for batch in size_buckets(keys, args.batch_size)]
    else:
        groups = [[image] for image in images]
    outputs: dict[int, torch.Tensor] = {}
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        for group in groups:
            if args.variant_seconds and outputs and time.perf_counter() - start > args.variant_seconds:
                break
            results = adv_climb_batch(model, [[s.to(device) for s in g.scaled] for g in group],
                                      [g.classes for g in group], opts, scales=args.scales,
                                      sizes=[g.size for g in group])
            for g, result in zip(group, results):
                outputs[g.index] = result.high_res.float().cpu()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return len(outputs) / seconds, memory.mib, outputs, seconds


def deviation(outputs: dict[int, torch.Tensor], reference: dict[int, torch.Tensor]) -> tuple[float | None, int]:
    common = sorted(set(outputs) & set(reference))
    if not common:
        return None, 0
    dev = max(float((outputs[i] - reference[i]).abs().max() / reference[i].abs().max().clamp_min(1e-12))
              for i in common)
    return dev, len(common)


def variants_for(args, device: torch.device) -> list[Variant]:
    variants = [] if args.no_reference else [Variant("reference fp32", impl="reference")]
    precisions = [p for p in args.precisions
                  if not (p == "tf32" and device.type != "cuda") and not (p == "bf16" and not bf16_supported(device))]
    for precision in precisions:
        for mode in args.modes:
            name = f"fast {mode} {precision}"
            variants.append(Variant(name, batched=mode == "batched", precision=precision))
            if args.channels_last:
                variants.append(Variant(f"{name} channels_last", batched=mode == "batched", precision=precision,
                                        channels_last=True))
    return variants


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = CAMClassifier(depth=args.depth, pretrained=None).to(device).eval()
    images = make_workload(args)
    flops = useful_flops(model, images, args, device)
    variants = variants_for(args, device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    peaks = peak_tflops(args, device, name)
    sizes: dict[tuple[int, int], int] = {}
    for image in images:
        sizes[image.size] = sizes.get(image.size, 0) + 1
    n_pairs = sum(len(image.classes) for image in images)
    memory_kind = ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                   else "growth of the process RSS during the variant above its RSS before it "
                        "(glibc malloc_trim first; sampled every 2 ms)")
    print(f"AdvCAM speed — device {device} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"model: CAMClassifier ResNet-{args.depth}, output stride 16, random init; steps T={args.steps}, "
          f"scales {args.scales}, batch_size {args.batch_size} images (batched), chunk_size {args.chunk_size}")
    print(f"workload ({args.workload}): {len(images)} images, sizes (H×W: count) "
          + ", ".join(f"{h}×{w}: {c}" for (h, w), c in sorted(sizes.items(), key=lambda kv: -kv[1]))
          + f"; {n_pairs} (image, class) pairs ({n_pairs / len(images):.2f} classes/image)")
    print(f"useful work: {sum(flops) / len(flops) / 1e12:.3g} TFLOP/image on average (forward + input "
          "gradient of both views per climbing step, FlopCounterMode)")
    print(f"peak TFLOP/s used for the fraction: {peaks or 'none known for this device (pass --peak-tflops)'}")
    print(f"memory: {memory_kind}")
    if args.variant_seconds:
        print(f"time budget: a variant starts no new image/batch after {args.variant_seconds:g} s")

    rows, baseline, reference = [], None, None
    for variant in variants:
        subset = images[: args.reference_images] if variant.impl == "reference" and args.reference_images else images
        rate, mib, outputs, seconds = run_variant(model, subset, variant, args, device)
        if baseline is None:
            baseline, reference = rate, outputs
        dev, n_common = deviation(outputs, reference)
        achieved = sum(flops[i] for i in outputs) / seconds / 1e12
        peak = peaks.get(variant.precision)
        rows.append((variant.name, len(outputs), rate, rate / baseline, mib, dev, n_common, achieved,
                     achieved / peak if peak else None))
        print(f"  done: {variant.name} ({len(outputs)} images, {seconds:.1f} s)", flush=True)

    base_name = variants[0].name
    print()
    print(f"| variant | images | images/s | min for {VOC_TRAIN_AUG:,} | speed-up vs {base_name} | peak memory (MiB) "
          f"| max rel. deviation vs {base_name} (images) | TFLOP/s | % of peak |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, rate, speedup, mib, dev, n_common, achieved, fraction in rows:
        dev_text = "-" if dev is None else f"{dev:.2e} ({n_common})"
        frac_text = "-" if fraction is None else f"{100 * fraction:.1f} %"
        print(f"| {name} | {n} | {rate:.4g} | {VOC_TRAIN_AUG / rate / 60:.4g} | {speedup:.2f}× | {mib:.0f} "
              f"| {dev_text} | {achieved:.3g} | {frac_text} |")


if __name__ == "__main__":
    main()
