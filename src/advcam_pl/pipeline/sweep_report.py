"""The report of an AdvCAM sweep (``conf/sweep/*.yaml``): every point's seed mIoU in one JSON + a PNG.

A multirun of ``sweep=<name>`` runs make_cam + eval_cam once per point. :class:`SweepReportCallback`
(the sweeps' ``hydra.callbacks.sweep_report``) writes ``sweep_point.json`` into each job's folder when
the job ends (the swept knob, the point's value, where its eval_cam metrics are) and, after the last
job, collects them into ``<sweep dir>/sweep_<knob>.json``, the format ``notebooks/sweep_report.ipynb``
reads::

    {"knob": "lam",
     "points": [{"value": 0.0, "seed_miou": 0.41, "cam_name": "advcam_T27_..._lam0.0_...",
                 "best_threshold": 0.3, "num_images": 1464, "split": "train"}, ...],
     "baseline_cam_miou": 0.39}

``seed_miou`` is at the best background threshold (``seed_crf_miou`` too when eval_cam ran the
CRF); ``baseline_cam_miou`` is plain CAM's on the same images (``sweep=baseline_cam``), ``null``
when that run is missing or evaluated other images. Beside it, ``sweep_<knob>.png``: seed mIoU
against the knob, CAM as a horizontal line. Both are logged through ``cfg.logger``: W&B gets the
plot as an image, the points as a table and a line plot; every logger gets the points as metrics.

From the command line, for a sweep folder (the multirun's ``hydra.sweep.dir``) or a work dir
(``paths.work_dir``: every AdvCAM folder whose record has the knob; default ``artifacts`` layout)::

    python -m advcam_pl.pipeline.sweep_report logs/advcam/multiruns/<time> [logger=csv ...]
    python -m advcam_pl.pipeline.sweep_report outputs/demo --knob lam --names 'advcam_T8_*'
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from advcam_pl.io import atomic_save_json, atomic_write

log = logging.getLogger(__name__)

POINT_FILE = "sweep_point.json"
AXIS_LABELS = {"lam": "λ (restoring loss weight)", "tau": "τ (mask threshold)", "steps": "T (adversarial iterations)",
               "step_size": "ξ (step size)"}


# -- one point --------------------------------------------------------------------------------------


def point_record(cfg: DictConfig) -> dict[str, Any]:
    """What the report needs of one sweep point, from its job config: the knob, the point's value
    (its label when ``sweep.labels`` has one), the CAM name and where the metrics are."""
    if cfg.get("sweep") is None:
        raise ValueError("a sweep point needs cfg.sweep (knob, value, baseline_metrics): run it as sweep=<name>")
    sweep = cfg.sweep
    value = sweep.value
    labels = OmegaConf.to_container(sweep.labels, resolve=True) if sweep.get("labels") else {}
    baseline = sweep.get("baseline_metrics")
    return {
        "knob": str(sweep.knob),
        "value": labels.get(str(value), value),
        "cam_name": str(cfg.cam.name),
        "cam_metrics": str(Path(cfg.artifacts.cam_metrics).resolve()),
        "baseline_metrics": str(Path(baseline).resolve()) if baseline else None,
    }


def write_point(cfg: DictConfig, job_dir: str | Path, status: str = "COMPLETED") -> Path:
    """``<job_dir>/sweep_point.json``: :func:`point_record` and the job's ``status``."""
    return atomic_save_json(Path(job_dir) / POINT_FILE, {**point_record(cfg), "status": status})


def _read_json(path: str | Path | None) -> dict | None:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise ValueError(f"{path}: not a JSON file ({err})") from None


def point_entry(value: Any, cam_name: str, metrics: dict, source: Path | str) -> dict[str, Any]:
    """One entry of ``points`` from eval_cam's metrics (``source`` names the file in errors)."""
    for key in ("seed_miou", "best_threshold"):
        if not isinstance(metrics.get(key), int | float):
            raise ValueError(f"{source}: '{key}' must be a number (an eval_cam metrics file), got {metrics.get(key)!r}")
    entry = {"value": value, "seed_miou": float(metrics["seed_miou"]), "cam_name": cam_name,
             "best_threshold": float(metrics["best_threshold"]), "num_images": metrics.get("num_images"),
             "split": metrics.get("split")}
    if isinstance(metrics.get("seed_crf_miou"), int | float):
        entry["seed_crf_miou"] = float(metrics["seed_crf_miou"])
    return entry


def baseline_miou(path: str | Path | None, points: Sequence[dict]) -> float | None:
    """Plain CAM's seed mIoU from its eval_cam metrics at ``path``, when it was measured on the
    points' images (same split and count); else ``None``, with a warning that says why."""
    metrics = _read_json(path)
    if metrics is None:
        log.warning("sweep report: no CAM baseline (%s missing); run `python -m advcam_pl sweep=baseline_cam` "
                    "with the sweep's data overrides to draw the CAM line", path)
        return None
    images = {(p.get("split"), p.get("num_images")) for p in points}
    if images and images != {(metrics.get("split"), metrics.get("num_images"))}:
        log.warning("sweep report: the CAM baseline %s was measured on %s (%s images), the points on %s; left out",
                    path, metrics.get("split"), metrics.get("num_images"), sorted(images, key=str))
        return None
    return float(metrics["seed_miou"])


# -- collecting the points ---------------------------------------------------------------------------


def _job_order(path: Path) -> tuple:
    name = path.parent.name
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def report_from_sweep_dir(sweep_dir: str | Path) -> dict[str, Any]:
    """The report of a multirun folder: its jobs' ``sweep_point.json`` in job order. A point whose
    metrics are missing (a failed job) is left out with a warning; a point met again (Optuna
    repeating a trial) counts once."""
    sweep_dir = Path(sweep_dir)
    records = sorted(sweep_dir.glob(f"*/{POINT_FILE}"), key=_job_order)
    if not records:
        raise FileNotFoundError(f"{sweep_dir}: no */{POINT_FILE}; a multirun of `sweep=<name>` writes one per job "
                                "(or pass a work dir with --knob)")
    points, seen, knobs, baselines = [], set(), set(), []
    for path in records:
        record = json.loads(path.read_text())
        knobs.add(record["knob"])
        baselines.append(record.get("baseline_metrics"))
        metrics = _read_json(record["cam_metrics"])
        if metrics is None:
            log.warning("sweep report: %s (%s=%s, job %s) has no metrics %s; left out", record["cam_name"],
                        record["knob"], record["value"], record.get("status"), record["cam_metrics"])
            continue
        if record["cam_name"] in seen:
            continue
        seen.add(record["cam_name"])
        points.append(point_entry(record["value"], record["cam_name"], metrics, record["cam_metrics"]))
    if len(knobs) != 1:
        raise ValueError(f"{sweep_dir}: the jobs sweep different knobs {sorted(knobs)}; one report per knob")
    return {"knob": knobs.pop(), "points": points, "baseline_cam_miou": baseline_miou(baselines[0], points)}


def report_from_work_dir(work_dir: str | Path, knob: str, names: str = "*", baseline: str = "cam") -> dict[str, Any]:
    """The report of every eval_cam metrics file ``<work_dir>/metrics/eval_<name>.json`` whose CAM
    folder ``<work_dir>/<name>`` was made with the AdvCAM knob ``knob`` (``lam`` or a dotted key of
    make_cam's record such as ``cam.climb.lam``) and whose name matches the glob ``names``, sorted
    by the knob's value; the baseline is ``eval_<baseline>.json``."""
    work_dir = Path(work_dir)
    key = knob if "." in knob else f"cam.climb.{knob}"
    points = []
    for path in sorted((work_dir / "metrics").glob("eval_*.json")):
        metrics = _read_json(path) if not path.name.endswith(".provenance.json") else None
        name = (metrics or {}).get("cam")
        if not name or "seed_miou" not in metrics or name == baseline or not fnmatch.fnmatch(name, names):
            continue
        record = _read_json(work_dir / name / "provenance.json") or {}
        if key not in record.get("settings", {}):
            continue
        points.append(point_entry(record["settings"][key], name, metrics, path))
    if not points:
        raise FileNotFoundError(f"{work_dir}: no eval_cam metrics of a CAM folder made with {key} "
                                f"(names matching {names!r}) under {work_dir / 'metrics'}")
    points.sort(key=lambda p: (str(type(p["value"])), p["value"]))
    return {"knob": knob.rsplit(".", 1)[-1], "points": points,
            "baseline_cam_miou": baseline_miou(work_dir / "metrics" / f"eval_{baseline}.json", points)}


# -- writing, drawing, logging -------------------------------------------------------------------------


def _is_numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def plot_report(report: dict, path: str | Path) -> Path:
    """Seed mIoU (%) against the knob, plain CAM as a dashed horizontal line, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [p["value"] for p in report["points"]]
    x = values if _is_numeric(values) else list(range(len(values)))
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    try:
        ax.plot(x, [100 * p["seed_miou"] for p in report["points"]], marker="o", label="AdvCAM")
        if report.get("baseline_cam_miou") is not None:
            ax.axhline(100 * report["baseline_cam_miou"], color="gray", linestyle="--", label="CAM")
        if not _is_numeric(values):
            ax.set_xticks(x, [str(v) for v in values], rotation=20, ha="right")
        ax.set_xlabel(AXIS_LABELS.get(report["knob"], report["knob"]))
        ax.set_ylabel("seed mIoU (%)")
        splits = {(p.get("split"), p.get("num_images")) for p in report["points"]}
        if len(splits) == 1:
            split, count = splits.pop()
            ax.set_title(f"seed mIoU on {split} ({count} images)", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)


def log_report(report: dict, png: str | Path, loggers: Sequence) -> None:
    """The points as metrics (one step per point) for every logger; for W&B also the plot, a table
    and a line plot of seed mIoU against the knob."""
    from advcam_pl.pipeline.common import log_metrics

    knob, points = report["knob"], report["points"]
    numeric = _is_numeric([p["value"] for p in points])
    for i, point in enumerate(points):
        scalars = {"sweep/seed_miou": point["seed_miou"], "sweep/best_threshold": point["best_threshold"]}
        if numeric:
            scalars[f"sweep/{knob}"] = point["value"]
        if report.get("baseline_cam_miou") is not None:
            scalars["sweep/baseline_cam_miou"] = report["baseline_cam_miou"]
        log_metrics(loggers, scalars, step=i)
    columns = [knob, "seed_miou", "best_threshold", "cam_name"]
    rows = [[p["value"] if numeric else str(p["value"]), p["seed_miou"], p["best_threshold"], p["cam_name"]]
            for p in points]
    for logger in loggers:
        if type(logger).__name__ != "WandbLogger":
            continue
        import wandb

        logger.log_image(key=f"sweep/{knob}_plot", images=[str(png)])
        logger.log_table(key=f"sweep/{knob}_points", columns=columns, data=rows)
        if numeric:
            table = wandb.Table(columns=columns, data=rows)
            logger.experiment.log({f"sweep/{knob}_line": wandb.plot.line(table, knob, "seed_miou",
                                                                          title=f"seed mIoU against {knob}")})


def write_report(report: dict, out_dir: str | Path, cfg: DictConfig | None = None) -> tuple[Path, Path]:
    """``<out_dir>/sweep_<knob>.json`` + ``.png``, logged through ``cfg.logger`` (files under
    ``out_dir``) when ``cfg`` is given; returns both paths."""
    out_dir = Path(out_dir)
    stem = f"sweep_{report['knob']}"
    json_path = atomic_save_json(out_dir / f"{stem}.json", report)
    png_path = plot_report(report, out_dir / f"{stem}.png")
    if cfg is not None:
        from advcam_pl.pipeline.common import stage_loggers

        with stage_loggers(cfg, "sweep_report", save_dir=out_dir) as loggers:
            log_report(report, png_path, loggers)
    baseline = report.get("baseline_cam_miou")
    log.info("sweep report (%s): %s\n%s", report["knob"], json_path, "\n".join(
        [f"  {report['knob']}={p['value']}: seed mIoU {100 * p['seed_miou']:.2f} (threshold {p['best_threshold']:.2f})"
         for p in report["points"]]
        + [f"  CAM baseline: {'n/a' if baseline is None else f'{100 * baseline:.2f}'}"]))
    return json_path, png_path


class SweepReportCallback(Callback):
    """Hydra callback of the sweeps: records each job's point when it ends, writes the report of the
    whole multirun after the last one (in the launching process, for every launcher)."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        status = getattr(getattr(job_return, "status", None), "name", "COMPLETED")
        write_point(config, config.hydra.runtime.output_dir, status)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        report = report_from_sweep_dir(sweep_dir)
        if not report["points"]:
            log.warning("sweep report: no point of %s has metrics; nothing to report", sweep_dir)
            return
        write_report(report, sweep_dir, config)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m advcam_pl.pipeline.sweep_report", description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="a multirun folder of sweep=<name>, or a work dir (with --knob)")
    parser.add_argument("--knob", help="work dir: the swept AdvCAM knob (lam, tau, steps, step_size or cam.climb.<key>)")
    parser.add_argument("--names", default="*", help="work dir: glob of the CAM names to include (default: all)")
    parser.add_argument("--baseline", default="cam", help="work dir: cam.name of the plain CAM run (default: cam)")
    parser.add_argument("--out", help="folder of the JSON and PNG (default: the folder)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the loggers, e.g. logger=csv "
                        "logger.wandb.offline=false (default: the root config's, offline W&B)")
    args = parser.parse_intermixed_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        parser.error(f"{folder} is not a folder")
    report = report_from_work_dir(folder, args.knob, args.names, args.baseline) if args.knob else \
        report_from_sweep_dir(folder)
    out = Path(args.out or folder)
    from advcam_pl.config import compose_config

    cfg = compose_config([f"paths.output_dir={out}", f"paths.work_dir={out}", *args.overrides])
    json_path, png_path = write_report(report, out, cfg)
    print(json.dumps(report, indent=1))
    print(f"wrote {json_path} and {png_path}")
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
