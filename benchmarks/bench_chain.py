"""``make bench-chain``: the weak chain for CAM and AdvCAM at the paper's AdvCAM settings, on a
larger synthetic set than the demo's: the paper's Table 1 (seed, + CRF, pseudo mask) and Fig. 6a
(seed mIoU against the climbing step t) on these data.

Composes ``experiment=bench_chain`` (conf/experiment/bench_chain.yaml: the demo's data look,
networks and refinement settings; AdvCAM with T = 27, scales 1.0 / 0.5 / 1.5 / 2.0 and the
official λ, τ, ξ; conf/experiment_cam/bench_chain_advcam.yaml: the climb analysis) and runs its
``stages`` with :func:`~advcam_pl.pipeline.run_pipeline` once per method of
``bench_chain.methods``, timing each stage. Prints the Table 1 analogue (with an all-background
row and the paper's VOC numbers), the climb's curves per step t (seed mIoU at the best threshold,
noise proportion, amplification of the discriminative and the other regions of the objects) and
what they say about AdvCAM against CAM, then the stage times; writes all of it to
``<work dir>/bench_chain.json``. Stages skip finished work, so a second run only prints.

    python benchmarks/bench_chain.py                          # 40 images, outputs/bench_chain
    python benchmarks/bench_chain.py --num-images 16          # a smoke run, outputs/bench_chain_n16
    python benchmarks/bench_chain.py --out DIR --threads 1 cam.climb.steps=10   # Hydra overrides last
"""

from __future__ import annotations

import argparse
import logging
import platform
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig

from advcam_pl.config import compose_config
from advcam_pl.data.synthetic import summarize
from advcam_pl.data.voc import VOCReader
from advcam_pl.errors import ConfigError
from advcam_pl.io import atomic_save_json
from advcam_pl.pipeline import run_pipeline
from advcam_pl.pipeline.common import check_synthetic_settings, data_root
from advcam_pl.pipeline.make_cam import analysis_path
from advcam_pl.pipeline.reference_rows import all_background_miou
from advcam_pl.pipeline.report import (
    Column,
    chain_metrics,
    climb_curve_table,
    climb_reading,
    format_table,
    read_metrics,
    table1,
    table1_values,
)

EXPERIMENT = "experiment=bench_chain"


def compose_bench(overrides: Sequence[str] = ()) -> DictConfig:
    return compose_config([EXPERIMENT, *overrides])


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (the CRF workers)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def stage_time_table(timings: Mapping[str, Mapping[str, float | None]]) -> str:
    """Wall seconds per stage (rows) and method (columns); ``-`` for a stage skipped as complete."""
    labels = list(timings)
    stages = list(dict.fromkeys(stage for per_method in timings.values() for stage in per_method))
    columns = [Column(label, width=max(7, len(label)), scale=1, digits=0) for label in labels]
    rows = [(stage, [timings[label].get(stage) for label in labels]) for stage in stages]
    rows.append(("total", [sum(v for v in timings[label].values() if v is not None) for label in labels]))
    return format_table("stage (wall s)", columns, rows, sep="  ")


def report(cfgs: Mapping[str, DictConfig], background: float | None) -> dict:
    """The tables and the reading, as text, with the numbers they were built from."""
    labels = list(cfgs)
    baseline = "CAM" if "CAM" in cfgs else labels[0]
    refs = [("all background", [background, background, background, None])] if background is not None else []
    out: dict = {"table1": table1(cfgs, baseline, refs),
                 "rows": {label: dict(zip(("seed", "seed_crf", "mask", "best_threshold"), table1_values(cfg)))
                          for label, cfg in cfgs.items()},
                 "all_background": background}
    advcam = next((cfg for cfg in cfgs.values() if cfg.cam.get("analysis")), None)
    curves = read_metrics(analysis_path(advcam)) if advcam is not None else {}
    out["curves"] = curves
    out["curve_table"] = climb_curve_table(curves) if curves else None
    if advcam is not None and baseline in cfgs:
        out["reading"] = climb_reading(chain_metrics(cfgs[baseline])["cam"], chain_metrics(advcam)["cam"], curves)
    return out


def settings(cfgs: Mapping[str, DictConfig], threads: int) -> dict:
    """What the numbers depend on: data size, networks, AdvCAM's settings (of the method that climbs)."""
    cfg = next((c for c in cfgs.values() if c.cam.get("climb") is not None), next(iter(cfgs.values())))
    climb = cfg.cam.get("climb") or {}
    return {"num_train_aug": cfg.data.generate.num_train, "eval_list": cfg.data.eval_list,
            "long_side": list(cfg.data.generate.long_side), "classifier": cfg.classifier.name, "irn": cfg.irn.name,
            "scales": list(cfg.cam.scales), "T": climb.get("steps"), "lam": climb.get("lam"), "tau": climb.get("tau"),
            "xi": climb.get("step_size"), "torch": torch.__version__, "torch_threads": threads,
            "machine": f"{platform.machine()} {platform.processor()}".strip()}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="benchmarks/bench_chain.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="paths.work_dir (default: outputs/bench_chain, "
                                      "outputs/bench_chain_n<N> with --num-images N)")
    parser.add_argument("--num-images", type=int, help="train_aug images to generate (data.generate.num_train; "
                                                        "the scored `train` list is data.generate.train_fraction of them)")
    parser.add_argument("--threads", type=int,
                        help="torch threads, as num_threads=N (default: the experiment's num_threads, every core)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every method's chain")
    args = parser.parse_intermixed_args(argv)  # options may follow the overrides
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    # run_pipeline applies num_threads at every stage, so the flag goes in as that key (set here only, it
    # would be overridden by the experiment's `num_threads: cores`).
    overrides = [*([f"num_threads={args.threads}"] if args.threads else []), *args.overrides]
    if args.num_images:
        overrides.append(f"data.generate.num_train={args.num_images}")
    out = args.out or (f"{compose_bench().paths.work_dir}_n{args.num_images}" if args.num_images else None)
    if out:
        overrides.insert(0, f"paths.work_dir={Path(out).resolve()}")

    base = compose_bench(overrides)
    try:
        check_synthetic_settings(base)
    except ConfigError as err:
        raise SystemExit(str(err)) from None
    print(summarize(data_root(base)))
    start = time.perf_counter()
    cfgs: dict[str, DictConfig] = {}
    timings: dict[str, dict[str, float | None]] = {}
    cpu: dict[str, float] = {}
    for label, method in base.bench_chain.methods.items():
        cfg = compose_bench([f"cam={method}", *overrides])
        cpu_start = cpu_seconds()
        timings[label] = {r.stage: None if r.metrics.get("skipped") else r.seconds for r in run_pipeline(cfg)}
        cpu[label] = cpu_seconds() - cpu_start
        cfgs[label] = cfg
    elapsed = time.perf_counter() - start

    root = data_root(base)
    result = report(cfgs, all_background_miou(root, base.data.eval_list))
    result["settings"] = settings(cfgs, torch.get_num_threads())
    num_eval = len(VOCReader(root, base.data.eval_list).ids)
    print()
    print(f"Table 1 on the synthetic data: mIoU (%) on '{base.data.eval_list}' ({num_eval} images); thr = the "
          f"seed's best background threshold; AdvCAM T = {result['settings']['T']}, scales {result['settings']['scales']}")
    print(result["table1"])
    if result["curve_table"]:
        print()
        print(f"Fig. 6a: AdvCAM's seed along the climb on '{base.data.eval_list}' (maps of x^0..x^t accumulated); "
              "noise % = added pixels (threshold "
              f"{result['curves'].get('noise_threshold')}) that are GT background; amp D / N = A_t / A_0 in the "
              "objects' discriminative / other regions")
        print(result["curve_table"])
    if result.get("reading"):
        print()
        print("\n".join(result["reading"]))
    print()
    print(stage_time_table(timings))
    print(f"total {elapsed:.0f} s wall; CPU s (process + CRF workers): "
          + ", ".join(f"{label} {seconds:.0f}" for label, seconds in cpu.items())
          + f"; torch threads {torch.get_num_threads()}")
    result.update({"command": " ".join(sys.argv), "stage_seconds": timings, "cpu_seconds": cpu, "total_seconds": elapsed})
    path = atomic_save_json(Path(base.paths.work_dir) / "bench_chain.json", result)
    print(f"written: {path}")
    return result


if __name__ == "__main__":
    main()
