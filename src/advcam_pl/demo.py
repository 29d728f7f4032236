"""``make demo``: the whole weak chain on a generated synthetic VOC-layout dataset, on CPU.

    python -m advcam_pl.demo [--out outputs/demo] [hydra overrides ...]

Composes ``experiment=demo`` (conf/experiment/demo.yaml: small configs of the same code, the
seed methods; conf/experiment_cam/demo_advcam.yaml: AdvCAM's T = 8) and runs its ``stages`` with
:func:`~advcam_pl.pipeline.run_pipeline` once per seed method of ``demo.methods``; only the
methods of ``demo.seg_seeds`` train and evaluate the segmentation network; with ``demo.references``
it is also trained on the ground-truth masks (its ceiling, :mod:`advcam_pl.pipeline.reference_rows`),
and the table gets the walk with ground-truth boundaries (stage ``eval_walk_ceiling``) and the
all-background score. Then the semi-supervised
half: ``demo.semi.stages`` (CCT, ``semi=cct_tiny``) once per run of ``demo.semi.runs`` (AdvCAM masks,
CAM masks, no weak labels). Prints one table of seed, seed + CRF, pseudo-mask and segmentation mIoU,
and one of the segmentation networks (DeepLab-v2 and the CCT runs). Each stage skips itself when its outputs are
complete, so a second run only prints the table, and ``python -m advcam_pl experiment=demo
cam=advcam`` continues the same chain for one method.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from advcam_pl.config import compose_config
from advcam_pl.errors import ConfigError
from advcam_pl.pipeline import run_pipeline
from advcam_pl.pipeline.common import check_synthetic_settings, data_root
from advcam_pl.pipeline.reference_rows import gt_seg_overrides, reference_table_rows
from advcam_pl.pipeline.report import chain_metrics, read_metrics, seed_method_summary, segmentation_summary
from advcam_pl.viz.stages import log_summary


def compose_demo(overrides: Sequence[str] = ()) -> DictConfig:
    return compose_config(["experiment=demo", *overrides])


def seg_seeds(cfg: DictConfig) -> list[str]:
    """``demo.seg_seeds`` as a list (one method name or a list of them)."""
    seeds = cfg.demo.seg_seeds
    return [seeds] if isinstance(seeds, str) else list(seeds)


def method_stages(cfg: DictConfig, method: str) -> list[str]:
    """``cfg.stages``, without ``demo.seg_stages`` unless ``method`` is in ``demo.seg_seeds``."""
    if method in seg_seeds(cfg):
        return list(cfg.stages)
    return [stage for stage in cfg.stages if stage not in cfg.demo.seg_stages]


def main(argv: Sequence[str] | None = None) -> dict[str, DictConfig]:
    """Run the demo; returns the config each table row ran with (label → config), the CCT runs last."""
    parser = argparse.ArgumentParser(prog="python -m advcam_pl.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="where data, checkpoints, maps and metrics go "
                                      "(paths.work_dir; default: outputs/demo)")
    parser.add_argument("overrides", nargs="*",
                        help="extra Hydra overrides, e.g. cam.scales=[1.0] demo.seg_seeds=[cam]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    overrides = [*([f"paths.work_dir={Path(args.out).resolve()}"] if args.out else []), *args.overrides]
    start = time.perf_counter()

    base = compose_demo(overrides)
    methods = dict(base.demo.methods)
    for method in seg_seeds(base):
        if method not in methods.values():
            raise ValueError(f"demo.seg_seeds={method!r} is not a method of demo.methods "
                             f"({', '.join(methods.values())})")
    from advcam_pl.data.synthetic import summarize

    try:
        check_synthetic_settings(base, "pass another --out (make demo DEMO_DIR=...) or remove that folder")
    except ConfigError as err:
        raise SystemExit(str(err)) from None
    print(summarize(data_root(base)))

    cfgs: dict[str, DictConfig] = {}
    timings: dict[str, float] = {}
    for label, method in methods.items():
        cfg = compose_demo([f"cam={method}", *overrides])
        cfg.stages = method_stages(cfg, method)
        for result in run_pipeline(cfg):
            timings[f"{result.stage}[{method}]"] = result.seconds
        cfgs[label] = cfg
    gt_seg = None
    if base.demo.get("references", False):  # the segmentation network on the GT masks: its ceiling
        gt_seg = compose_demo([*gt_seg_overrides(), *overrides])
        gt_seg.stages = list(base.demo.seg_stages)
        for result in run_pipeline(gt_seg):
            timings[f"{result.stage}[gt]"] = result.seconds

    semi_cfgs: dict[str, DictConfig] = {}
    for label, run_overrides in (base.demo.get("semi") or {}).get("runs", {}).items():
        cfg = compose_demo([*run_overrides, *overrides])
        cfg.stages = list(cfg.demo.semi.stages)
        for result in run_pipeline(cfg):
            timings[f"{result.stage}[{label}]"] = result.seconds
        semi_cfgs[label] = cfg

    elapsed = time.perf_counter() - start
    print()
    print(f"mIoU (%) on the synthetic data: seeds and masks on '{base.data.eval_list}', "
          f"segmentation on '{base.data.val_list}'")
    summary = seed_method_summary(cfgs, reference_table_rows(base, gt_seg) if gt_seg is not None else ())
    print(summary.text())
    log_summary(base, "seed_methods", summary)
    if semi_cfgs:
        rows = {f"DeepLab-v2 + {label} masks": chain_metrics(cfgs[label])["seg"]
                for label, method in methods.items() if method in seg_seeds(base)}
        if gt_seg is not None:
            rows["DeepLab-v2 + GT masks"] = read_metrics(gt_seg.artifacts.seg_metrics)
        rows.update({label: read_metrics(cfg.artifacts.semi_metrics) for label, cfg in semi_cfgs.items()})
        print()
        print(f"segmentation mIoU (%) on '{base.data.val_list}', multi-scale + flip, without and with the CRF")
        segmentation = segmentation_summary(rows)
        print(segmentation.text())
        log_summary(base, "segmentation", segmentation)
    print()
    print("stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    print(f"total {elapsed:.0f} s; outputs in {Path(base.paths.work_dir).resolve()} "
          "(metrics/*.json, checkpoints/, maps and masks)")
    return {**cfgs, **semi_cfgs}


if __name__ == "__main__":
    main()
