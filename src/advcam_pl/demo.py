"""``make demo``: the whole weak chain on a generated synthetic VOC-layout dataset, on CPU.

    python -m advcam_pl.demo --out outputs/demo [hydra overrides ...]

Composes ``experiment=demo`` (small configs of the same code: ResNet-18 classifier and IRN,
a small DeepLab-v2), runs every stage for plain CAM and for AdvCAM seeds, and prints one table:
seed, seed + CRF, pseudo-mask and segmentation mIoU. Each stage skips itself when its outputs
are complete, so a second run only prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from advcam_pl.__main__ import CONFIG_DIR
from advcam_pl.pipeline import run_stage
from advcam_pl.pipeline.common import data_root, seed_everything

log = logging.getLogger("advcam_pl.demo")

SEED_METHODS = {"cam": "CAM", "advcam": "AdvCAM"}
# CPU time only: T = 27 costs ~35 s per synthetic image on one core; the steps are not tuned for
# the result (conf/experiment/demo.yaml says what else the demo shrinks).
ADVCAM_DEMO_OVERRIDES = ("cam.steps=8",)
REFINE_STAGES = ("make_cam", "eval_cam", "make_ir_label", "train_irn", "make_sem_seg", "eval_sem_seg")


def compose_demo(out: Path, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=[
            "experiment=demo",
            f"paths.output_dir={out}",
            f"paths.work_dir={out}",
            f"data.root={out}/data/synthetic",
            *overrides,
        ])


def read_json(path: str) -> dict:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else {}


def fmt(value) -> str:
    return f"{100 * value:6.1f}" if isinstance(value, int | float) else f"{'-':>6}"


def summary_table(rows: dict[str, dict]) -> str:
    head = f"{'seeds':<8} {'seed':>6} {'+CRF':>6} {'mask':>6} {'seg val':>8}"
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(f"{name:<8} {fmt(r.get('seed'))} {fmt(r.get('seed_crf'))} {fmt(r.get('mask'))} "
                     f"{fmt(r.get('seg')):>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/demo", help="where data, checkpoints, maps and metrics go")
    parser.add_argument("--seg-seeds", default="advcam", choices=sorted(SEED_METHODS),
                        help="which pseudo masks train the segmentation network")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. cam.steps=10")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    out = Path(args.out).resolve()
    start = time.perf_counter()

    base = compose_demo(out, args.overrides)
    seed_everything(base.seed)
    from advcam_pl.data.synthetic import summarize

    root = data_root(base)
    print(summarize(root))
    run_stage("train_cam", base)

    rows: dict[str, dict] = {}
    timings: dict[str, float] = {}
    for method, label in SEED_METHODS.items():
        method_overrides = list(ADVCAM_DEMO_OVERRIDES) if method == "advcam" else []
        cfg = compose_demo(out, [f"cam={method}", *method_overrides, *args.overrides])
        for stage in REFINE_STAGES:
            t0 = time.perf_counter()
            run_stage(stage, cfg)
            timings[f"{stage}[{method}]"] = time.perf_counter() - t0
        seeds = read_json(cfg.artifacts.cam_metrics)
        masks = read_json(cfg.artifacts.sem_seg_metrics)
        rows[label] = {"seed": seeds.get("seed_miou"), "seed_crf": seeds.get("seed_crf_miou"),
                       "mask": masks.get("miou")}
        if method == args.seg_seeds:
            for stage in ("train_seg", "eval_seg"):
                t0 = time.perf_counter()
                run_stage(stage, cfg)
                timings[f"{stage}[{method}]"] = time.perf_counter() - t0
            rows[label]["seg"] = read_json(cfg.artifacts.seg_metrics).get("miou")

    elapsed = time.perf_counter() - start
    print()
    print(f"mIoU (%) on the synthetic data: seeds and masks on '{base.data.eval_list}', "
          f"segmentation on '{base.data.val_list}'")
    print(summary_table(rows))
    print()
    print("stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    print(f"total {elapsed:.0f} s; outputs in {out} (metrics/*.json, checkpoints/, maps and masks)")
    return rows


if __name__ == "__main__":
    main()
