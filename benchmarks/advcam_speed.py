"""AdvCAM speed and memory: the official-structure loop (``impl="reference"``) beside the batched one.

Same model (ResNet-50, output stride 16, random init — speed does not depend on the weights), same
images (random uint8, resized per scale with PIL bicubic and normalised, as InferenceDataModule
does), same classes; every variant runs in this process, one after the other, so the speed-up
ratios compare like with like. Deviation = max |high_res − high_res_reference| / max |reference|,
the worst image.

    python benchmarks/advcam_speed.py                       # CPU defaults (small; see the header)
    python benchmarks/advcam_speed.py --device cuda         # VOC size 375×500, T = 27, 4 scales
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

from advcam_pl.advcam import adv_climb
from advcam_pl.data.transforms import multiscale_images
from advcam_pl.models.cam_classifier import CAMClassifier

CPU_DEFAULTS = {"size": (96, 128), "steps": 3, "num_images": 2, "scales": (1.0, 0.5)}
GPU_DEFAULTS = {"size": (375, 500), "steps": 27, "num_images": 3, "scales": (1.0, 0.5, 1.5, 2.0)}


@dataclass
class Variant:
    name: str
    impl: str
    autocast: str | None = None
    channels_last: bool = False


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="image size (default: per device)")
    p.add_argument("--steps", type=int, help="T (default: 3 on CPU, 27 on GPU)")
    p.add_argument("--num-images", type=int, help="images per variant (default: 2 on CPU, 3 on GPU)")
    p.add_argument("--classes-per-image", type=int, default=2)
    p.add_argument("--scales", type=float, nargs="+", help="default: 1.0 0.5 on CPU, 1.0 0.5 1.5 2.0 on GPU")
    p.add_argument("--depth", type=int, default=50, help="ResNet depth of the CAM classifier")
    p.add_argument("--chunk-size", type=int, default=None, help="classes per batch of the fast loop")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--no-reference", action="store_true", help="skip the (slow) reference loop")
    p.add_argument("--no-bf16", action="store_true", help="skip the bf16-autocast variant")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    defaults = GPU_DEFAULTS if args.device.startswith("cuda") else CPU_DEFAULTS
    args.size = tuple(args.size or defaults["size"])
    args.steps = args.steps or defaults["steps"]
    args.num_images = args.num_images or defaults["num_images"]
    args.scales = tuple(args.scales or defaults["scales"])
    return args


def make_inputs(args) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    rng = np.random.default_rng(args.seed)
    inputs = []
    for _ in range(args.num_images):
        # smooth random image: low-resolution noise upsampled, so the CAMs have some structure
        small = rng.integers(0, 256, size=(args.size[0] // 8 + 1, args.size[1] // 8 + 1, 3), dtype=np.uint8)
        img = np.kron(small, np.ones((8, 8, 1), np.uint8))[: args.size[0], : args.size[1]]
        classes = torch.as_tensor(np.sort(rng.choice(20, args.classes_per_image, replace=False)))
        inputs.append((multiscale_images(img, args.scales), classes))
    return inputs


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


def run_variant(model, inputs, variant: Variant, args, device) -> tuple[float, float, list[torch.Tensor]]:
    kwargs = dict(steps=args.steps, scales=args.scales, impl=variant.impl)
    if variant.impl == "fast":
        kwargs.update(chunk_size=args.chunk_size, autocast_dtype=variant.autocast,
                      channels_last=variant.channels_last)
    # warm-up on a small image (kernel selection, allocator), not timed
    adv_climb(model, inputs[0][0][0][:, :64, :64], inputs[0][1][:1], **{**kwargs, "steps": 2, "scales": (1.0,)})
    outputs = []
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        for images, classes in inputs:
            result = adv_climb(model, [im.to(device) for im in images], classes, **kwargs)
            outputs.append(result.high_res.float().cpu())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return len(inputs) / seconds, memory.mib, outputs


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = CAMClassifier(depth=args.depth, pretrained=None).to(device).eval()
    n_grad = sum(p.requires_grad for p in model.parameters())
    n_params = len(list(model.parameters()))
    inputs = make_inputs(args)

    variants = [Variant("reference fp32", "reference")] if not args.no_reference else []
    variants.append(Variant("fast fp32", "fast"))
    if device.type == "cuda":
        variants.append(Variant("fast fp32 channels_last", "fast", channels_last=True))
    if not args.no_bf16 and bf16_supported(device):
        variants.append(Variant("fast bf16 autocast", "fast", autocast="bf16"))
        if device.type == "cuda":
            variants.append(Variant("fast bf16 autocast channels_last", "fast", "bf16", True))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    memory_kind = ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                   else "growth of the process RSS during the variant above its RSS before it "
                        "(glibc malloc_trim first; sampled every 2 ms)")
    print(f"AdvCAM speed — device {device} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"model: CAMClassifier ResNet-{args.depth}, output stride 16, random init "
          f"({n_grad}/{n_params} parameter tensors require grad); {args.num_images} images {args.size[0]}×{args.size[1]} (H×W), "
          f"{args.classes_per_image} classes/image, steps T={args.steps}, scales {args.scales}, "
          f"chunk_size {args.chunk_size}")
    print(f"memory: {memory_kind}")
    rows, baseline, reference = [], None, None
    for variant in variants:
        rate, mib, outputs = run_variant(model, inputs, variant, args, device)
        if baseline is None:
            baseline, reference = rate, outputs
        deviation = max(float((o - r).abs().max() / r.abs().max().clamp_min(1e-12))
                        for o, r in zip(outputs, reference))
        rows.append((variant.name, rate, rate / baseline, mib, deviation))
        print(f"  done: {variant.name}", flush=True)
    base_name = variants[0].name
    print()
    print(f"| variant | images/s | speed-up vs {base_name} | peak memory (MiB) | max rel. deviation of high_res vs {base_name} |")
    print("|---|---:|---:|---:|---:|")
    for name, rate, speedup, mib, deviation in rows:
        print(f"| {name} | {rate:.4g} | {speedup:.2f}× | {mib:.0f} | {deviation:.2e} |")


if __name__ == "__main__":
    main()
