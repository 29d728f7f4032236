"""The sweep configs (conf/sweep) and their report (advcam_pl.pipeline.sweep_report): every option
expands to its points with distinct CAM folders, the report turns eval_cam metrics into the JSON the
sweep notebook reads plus a PNG, and a real two-point multirun shares one trained classifier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from PIL import Image

from advcam_pl.advcam import ClimbOptions
from advcam_pl.config import CONFIG_DIR, compose_config
from advcam_pl.config_checks import config_errors
from advcam_pl.pipeline import StageResult, run_stage
from advcam_pl.pipeline import eval_cam as eval_cam_stage
from advcam_pl.pipeline.sweep_report import (
    POINT_FILE,
    point_record,
    report_from_sweep_dir,
    report_from_work_dir,
    write_point,
    write_report,
)

# sweep option → (knob, the report's values in sweep order)
GRID_SWEEPS = {
    "fig6_lambda": ("lam", [0.0, 1.0, 3.0, 5.0, 7.0, 10.0, 15.0]),
    "fig6_tau": ("tau", [0.3, 0.4, 0.5, 0.6, 0.7]),
    "fig6_steps": ("steps", [1, 5, 10, 15, 20, 25, 30]),
    "fig6_stepsize": ("step_size", [0.02, 0.04, 0.08, 0.12, 0.16]),
    "table2_ablation": ("regulariser", ["none", "suppression only", "restoring only", "both"]),
}
# Table 2's rows: label → (λ, suppress_others)
TABLE2 = {"none": (0.0, False), "suppression only": (0.0, True), "restoring only": (7.0, False), "both": (7.0, True)}


def sweep_points(name: str, *overrides: str) -> list[list[str]]:
    """The per-job overrides that Hydra's basic sweeper makes of ``sweep=<name>``."""
    cfg = compose_config([f"sweep={name}", "data.root=/voc", *overrides], return_hydra_config=True)
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)[0]


def test_every_sweep_option_is_tested():
    options = {p.stem for p in (CONFIG_DIR / "sweep").glob("*.yaml")}
    assert options == {*GRID_SWEEPS, "optuna", "baseline_cam"}


@pytest.mark.parametrize("name", sorted(GRID_SWEEPS))
def test_every_sweep_expands_to_its_points_each_with_its_own_cam_folder(name, compose_cfg):
    knob, expected = GRID_SWEEPS[name]
    points = sweep_points(name)
    records, names = [], set()
    for overrides in points:
        cfg = compose_cfg(f"sweep={name}", "data.root=/voc", *overrides)
        assert config_errors(cfg) == []
        assert list(cfg.stages) == ["train_cam", "make_cam", "eval_cam"] and cfg.cam.method == "advcam"
        options = instantiate(cfg.cam.climb)
        assert isinstance(options, ClimbOptions)
        record = point_record(cfg)
        records.append(record)
        names.add(cfg.cam.name)
        if name == "table2_ablation":
            assert (options.lam, options.suppress_others) == TABLE2[record["value"]]
        else:
            assert getattr(options, knob) == record["value"]
            assert f"{record['value']}" in cfg.cam.name
        assert record["cam_metrics"] == str(Path(cfg.artifacts.cam_metrics).resolve())
        assert record["cam_metrics"].endswith(f"eval_{cfg.cam.name}.json")
    assert [r["knob"] for r in records] == [knob] * len(expected)
    assert [r["value"] for r in records] == expected
    assert len(names) == len(points) and "cam" not in names  # no point overwrites another or the baseline


def test_a_point_two_sweeps_share_is_one_cam_folder_and_the_work_dir_is_shared(compose_cfg):
    lam7 = compose_cfg("sweep=fig6_lambda", "cam.climb.lam=7.0")
    steps27 = compose_cfg("sweep=fig6_steps", "cam.climb.steps=27")
    assert lam7.cam.name == steps27.cam.name == "advcam_T27_xi0.08_lam7.0_tau0.5_supTrue"
    # without a work dir on the command line, every job of a sweep and the baseline use one folder
    cfgs = [compose_config([s, "paths.output_dir=/run/job0", "task_name=t"])
            for s in ("sweep=fig6_lambda", "sweep=fig6_tau", "sweep=baseline_cam")]
    assert {c.paths.work_dir for c in cfgs} == {f"{cfgs[0].paths.root_dir}/outputs/t"}
    assert {c.artifacts.cam_ckpt for c in cfgs} == {f"{cfgs[0].paths.root_dir}/outputs/t/checkpoints/cam_classifier.ckpt"}


def test_the_baseline_is_plain_cam_on_the_sweeps_images(compose_cfg):
    baseline = compose_cfg("sweep=baseline_cam", "experiment=demo")
    point = compose_cfg("sweep=fig6_lambda", "experiment=demo")
    assert baseline.cam.method == "cam" and baseline.cam.name == "cam"
    assert baseline.data.infer_list == baseline.data.eval_list == point.data.infer_list == point.data.eval_list
    assert point.sweep.baseline_metrics == baseline.artifacts.cam_metrics
    assert point.cam.climb.steps == 8  # the demo's T (experiment_cam/demo_advcam.yaml) still applies
    assert compose_cfg("sweep=fig6_steps", "experiment=demo", "cam.climb.steps=20").cam.name.startswith("advcam_T20_")


def test_a_multirun_without_dash_m_and_a_command_line_sweep_replaces_the_values():
    cfg = compose_config(["sweep=fig6_lambda", "data.root=/voc"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.callbacks.sweep_report._target_ == "advcam_pl.pipeline.sweep_report.SweepReportCallback"
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()] + ["cam.climb.lam=0.0,7.0"]
    points = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)[0]
    assert points == [["cam.climb.lam=0.0"], ["cam.climb.lam=7.0"]]


def test_the_optuna_sweep_composes_and_tunes_lambda_tau_and_steps(compose_cfg):
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override
    from optuna.distributions import CategoricalDistribution

    cfg = compose_cfg("sweep=optuna", "data.root=/voc", return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == cfg.seed
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in sweeper.params.items()])
    spaces = {o.get_key_element(): create_optuna_distribution_from_override(o) for o in overrides}
    assert set(spaces) == {"cam.climb.lam", "cam.climb.tau", "cam.climb.steps"}
    assert all(isinstance(s, CategoricalDistribution) for s in spaces.values())
    assert 7.0 in spaces["cam.climb.lam"].choices and 27 in spaces["cam.climb.steps"].choices
    trial = compose_cfg("sweep=optuna", "data.root=/voc", "cam.climb.lam=3.0", "cam.climb.tau=0.4",
                        "cam.climb.steps=10")
    assert config_errors(trial) == []
    assert point_record(trial)["value"] == "lam3.0_tau0.4_T10"
    assert trial.cam.name == "advcam_T10_xi0.08_lam3.0_tau0.4_supTrue"


def test_a_skipped_eval_cam_returns_its_recorded_objective_and_main_a_float(compose_cfg, monkeypatch, tmp_path):
    import advcam_pl.__main__ as entry
    import advcam_pl.pipeline as pipeline

    cfg = compose_cfg("stages=eval_cam")
    Path(cfg.artifacts.cam_metrics).parent.mkdir(parents=True)
    Path(cfg.artifacts.cam_metrics).write_text(json.dumps({"seed_miou": 0.42, "objective": 0.42}))
    monkeypatch.setattr(eval_cam_stage, "is_done", lambda cfg: True)
    assert run_stage("eval_cam", cfg) == {"seed_miou": 0.42, "objective": 0.42, "skipped": True}

    monkeypatch.setattr(pipeline, "run_pipeline",
                        lambda cfg: [StageResult("eval_cam", {"objective": np.float64(0.25)}, 0.0)])
    value = entry.main.__wrapped__(cfg)
    assert value == 0.25 and type(value) is float  # what Optuna's sweeper reads


# -- the report ----------------------------------------------------------------------------------------


def eval_cam_metrics(path: Path, name: str, miou: float, split: str = "train", num_images: int = 12) -> Path:
    """A file as eval_cam writes it (the keys the report reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cam": name, "split": split, "num_images": num_images, "seed_miou": miou,
                                "best_threshold": 0.3, "objective": miou, "per_class_iou": {}}))
    return path


def fake_sweep(tmp_path: Path, compose_cfg, values=(0.0, 3.0, 7.0), mious=(0.41, 0.47, 0.52)) -> Path:
    """A multirun folder as sweep=fig6_lambda leaves it: one sweep_point.json per job, the metrics in
    the work dir (``tmp_path``)."""
    sweep_dir = tmp_path / "multirun"
    for job, (value, miou) in enumerate(zip(values, mious)):
        cfg = compose_cfg("sweep=fig6_lambda", f"cam.climb.lam={value}")
        eval_cam_metrics(Path(cfg.artifacts.cam_metrics), cfg.cam.name, miou)
        write_point(cfg, sweep_dir / str(job))
    return sweep_dir


def notebook_load_sweep():
    """``load_sweep`` of notebooks/sweep_report.ipynb, the reader the report is written for."""
    cells = json.loads((CONFIG_DIR.parent / "notebooks" / "sweep_report.ipynb").read_text())["cells"]
    (source,) = ["".join(c["source"]) for c in cells if c["cell_type"] == "code" and "def load_sweep" in "".join(c["source"])]
    namespace: dict = {}
    exec(compile(source, "sweep_report.ipynb", "exec"), namespace)
    return namespace["load_sweep"]


def check_notebook_format(report: dict, tmp_path: Path | None = None) -> None:
    """What notebooks/sweep_report.ipynb's load_sweep requires, and nothing but its three keys."""
    if tmp_path is not None and (CONFIG_DIR.parent / "notebooks").is_dir():  # a checkout, not an install
        path = tmp_path / "notebook_input.json"
        path.write_text(json.dumps(report))
        assert notebook_load_sweep()(path) == report
    assert set(report) == {"knob", "points", "baseline_cam_miou"}
    assert isinstance(report["knob"], str) and isinstance(report["points"], list)
    for point in report["points"]:
        assert "value" in point and isinstance(point["seed_miou"], float) and 0 <= point["seed_miou"] <= 1


def test_the_report_collects_the_points_in_sweep_order_with_the_cam_baseline(tmp_path, compose_cfg):
    sweep_dir = fake_sweep(tmp_path, compose_cfg)
    eval_cam_metrics(tmp_path / "metrics" / "eval_cam.json", "cam", 0.39)
    report = report_from_sweep_dir(sweep_dir)
    check_notebook_format(report, tmp_path)
    assert report["knob"] == "lam" and report["baseline_cam_miou"] == 0.39
    assert [(p["value"], p["seed_miou"]) for p in report["points"]] == [(0.0, 0.41), (3.0, 0.47), (7.0, 0.52)]
    assert report["points"][2]["cam_name"] == "advcam_T27_xi0.08_lam7.0_tau0.5_supTrue"

    json_path, png_path = write_report(report, sweep_dir, compose_cfg("logger=csv"))
    assert json.loads(json_path.read_text()) == report and json_path.name == "sweep_lam.json"
    with Image.open(png_path) as image:
        assert image.format == "PNG" and image.size[0] > 200
    rows = (sweep_dir / "csv" / "sweep_report" / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",") == ["step", "sweep/baseline_cam_miou", "sweep/best_threshold", "sweep/lam",
                                  "sweep/seed_miou"]
    assert [float(r.split(",")[-1]) for r in rows[1:]] == [0.41, 0.47, 0.52]


def test_the_report_leaves_out_a_failed_point_and_a_baseline_on_other_images(tmp_path, compose_cfg):
    sweep_dir = fake_sweep(tmp_path, compose_cfg)
    Path(json.loads((sweep_dir / "1" / POINT_FILE).read_text())["cam_metrics"]).unlink()  # job 1 failed
    eval_cam_metrics(tmp_path / "metrics" / "eval_cam.json", "cam", 0.39, split="val")
    report = report_from_sweep_dir(sweep_dir)
    assert [p["value"] for p in report["points"]] == [0.0, 7.0] and report["baseline_cam_miou"] is None
    with pytest.raises(FileNotFoundError, match="sweep_point.json"):
        report_from_sweep_dir(tmp_path / "metrics")


def test_table2_points_carry_their_labels_and_plot_as_categories(tmp_path, compose_cfg):
    sweep_dir = tmp_path / "multirun"
    for job, overrides in enumerate(sweep_points("table2_ablation")):
        cfg = compose_cfg("sweep=table2_ablation", *overrides)
        eval_cam_metrics(Path(cfg.artifacts.cam_metrics), cfg.cam.name, 0.4 + 0.01 * job)
        write_point(cfg, sweep_dir / str(job))
    report = report_from_sweep_dir(sweep_dir)
    check_notebook_format(report, tmp_path)
    assert [p["value"] for p in report["points"]] == list(TABLE2)
    _, png_path = write_report(report, sweep_dir)
    assert png_path.is_file() and png_path.name == "sweep_regulariser.png"


def test_a_work_dir_report_reads_the_knob_from_each_cam_folders_record(tmp_path):
    for name, lam in (("advcam_a", 7.0), ("advcam_b", 0.0), ("other_c", 3.0)):
        eval_cam_metrics(tmp_path / "metrics" / f"eval_{name}.json", name, 0.4 + lam / 100)
        (tmp_path / name).mkdir()
        (tmp_path / name / "provenance.json").write_text(json.dumps({"settings": {"cam.climb.lam": lam}}))
    eval_cam_metrics(tmp_path / "metrics" / "eval_cam.json", "cam", 0.38)
    report = report_from_work_dir(tmp_path, "lam", names="advcam_*")
    check_notebook_format(report)
    assert [(p["value"], p["cam_name"]) for p in report["points"]] == [(0.0, "advcam_b"), (7.0, "advcam_a")]
    assert report["baseline_cam_miou"] == 0.38
    with pytest.raises(FileNotFoundError, match="cam.climb.tau"):
        report_from_work_dir(tmp_path, "tau")


def test_wandb_gets_the_plot_a_table_and_a_line_plot(tmp_path, compose_cfg, monkeypatch):
    from advcam_pl.pipeline import sweep_report

    calls = []

    class WandbLogger:  # the report only needs these; the name is how it recognises W&B
        def log_metrics(self, metrics, step=None):
            calls.append(("metrics", step))

        def log_image(self, key, images):
            calls.append(("image", key, images))

        def log_table(self, key, columns, data):
            calls.append(("table", key, columns, data))

        @property
        def experiment(self):
            return type("Run", (), {"log": lambda _, d: calls.append(("log", sorted(d)))})()

    sweep_dir = fake_sweep(tmp_path, compose_cfg)
    report = report_from_sweep_dir(sweep_dir)
    png = sweep_report.plot_report(report, tmp_path / "plot.png")
    sweep_report.log_report(report, png, [WandbLogger()])
    assert [c for c in calls if c[0] == "metrics"] == [("metrics", 0), ("metrics", 1), ("metrics", 2)]
    assert ("image", "sweep/lam_plot", [str(png)]) in calls
    table = next(c for c in calls if c[0] == "table")
    assert table[2][:2] == ["lam", "seed_miou"] and [row[:2] for row in table[3]] == [[0.0, 0.41], [3.0, 0.47],
                                                                                      [7.0, 0.52]]
    assert ("log", ["sweep/lam_line"]) in calls


@pytest.mark.slow
def test_a_two_point_multirun_shares_the_classifier_and_writes_the_report(synthetic_root, tmp_path):
    """The CAM baseline (which trains the classifier), then ``sweep=fig6_lambda`` with two values of λ,
    as ``make sweep`` runs them, in child processes."""
    common = ["data=synthetic", f"data.root={synthetic_root}", "classifier=resnet18", "classifier.train.max_epochs=1",
              "classifier.train.crop_size=32", "classifier.train.resize_long=[32,48]", "trainer=cpu",
              "+trainer.enable_progress_bar=false", "callbacks=none", "logger=csv", "cam.scales=[1.0]"]
    env = {**os.environ, "ADVCAM_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"}

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "advcam_pl", *args, *common], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]

    run("sweep=baseline_cam")
    assert (tmp_path / "outputs" / "advcam" / "checkpoints" / "cam_classifier.ckpt").is_file()
    run("sweep=fig6_lambda", "cam.climb.lam=0.0,7.0", "cam.climb.steps=2")
    (sweep_dir,) = (tmp_path / "logs" / "advcam" / "multiruns").iterdir()
    for job in ("0", "1"):  # every point found the baseline's classifier
        assert "stage train_cam: outputs complete, skipped" in (sweep_dir / job / "__main__.log").read_text()
    report = json.loads((sweep_dir / "sweep_lam.json").read_text())
    check_notebook_format(report)
    assert [p["value"] for p in report["points"]] == [0.0, 7.0]
    assert [p["cam_name"] for p in report["points"]] == [f"advcam_T2_xi0.08_lam{v}_tau0.5_supTrue" for v in (0.0, 7.0)]
    for point in report["points"]:
        metrics = json.loads((tmp_path / "outputs" / "advcam" / "metrics" / f"eval_{point['cam_name']}.json").read_text())
        assert point["seed_miou"] == metrics["seed_miou"] and point["num_images"] == 12
    baseline = json.loads((tmp_path / "outputs" / "advcam" / "metrics" / "eval_cam.json").read_text())
    assert report["baseline_cam_miou"] == baseline["seed_miou"]
    assert (sweep_dir / "sweep_lam.png").stat().st_size > 0
