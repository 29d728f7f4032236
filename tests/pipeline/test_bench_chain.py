"""`make bench-chain`: the experiment keeps AdvCAM's official settings, and benchmarks/bench_chain.py
builds Table 1, the Fig. 6a curve and the reading from the metrics files (stages faked)."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
import torch
from tests.conftest import SYNTHETIC_KWARGS, generate_overrides

from advcam_pl.config import compose_config
from advcam_pl.io import atomic_save_json
from advcam_pl.pipeline.make_cam import analysis_path
from advcam_pl.pipeline.reference_rows import all_background_miou

CHAIN = ["make_cam", "eval_cam", "make_ir_label", "train_irn", "make_sem_seg", "eval_sem_seg"]
# the session dataset's generation settings, so the driver accepts it as its own
DATA = ["--num-images", str(SYNTHETIC_KWARGS["num_train"]),
        *generate_overrides(num_val=SYNTHETIC_KWARGS["num_val"], num_test=SYNTHETIC_KWARGS["num_test"],
                            train_fraction=0.5, long_side=SYNTHETIC_KWARGS["long_side"])]


@pytest.fixture(scope="module")
def bench_chain(repo_root):
    spec = importlib.util.spec_from_file_location("bench_chain", repo_root / "benchmarks" / "bench_chain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_runs_advcam_at_the_official_settings_on_four_scales(compose_cfg):
    official = compose_cfg("cam=advcam").cam
    bench = compose_cfg("experiment=bench_chain", "cam=advcam").cam
    assert bench.climb == official.climb  # T, λ, τ, ξ and every other knob
    assert (bench.climb.steps, bench.climb.lam, bench.climb.tau, bench.climb.step_size) == (27, 7.0, 0.5, 0.08)
    assert list(bench.scales) == list(official.scales) == [1.0, 0.5, 1.5, 2.0]
    assert bench.analysis is True and max(bench.analysis_thresholds) >= 0.9
    cam = compose_cfg("experiment=bench_chain", "cam=cam")
    assert list(cam.cam.scales) == [1.0, 0.5, 1.5, 2.0] and not cam.cam.analysis
    demo = compose_cfg("experiment=demo", "cam=advcam")
    assert list(cam.data.generate.long_side) == list(demo.data.generate.long_side)
    assert cam.data.generate.train_fraction == 1.0  # every image is scored
    assert cam.stages[-1] == "eval_sem_seg"
    assert compose_config(["experiment=bench_chain"]).paths.work_dir.endswith("/outputs/bench_chain")


def steps(cfg, group: str) -> int:
    per_epoch = -(-cfg.data.generate.num_train // cfg[group].train.batch_size)
    return cfg[group].train.max_epochs * per_epoch


@pytest.mark.parametrize("group", ["classifier", "irn"])
def test_the_benchmark_trains_its_networks_for_the_demos_number_of_steps(compose_cfg, group):
    bench, demo = compose_cfg("experiment=bench_chain"), compose_cfg("experiment=demo")
    assert bench[group].train.batch_size == demo[group].train.batch_size
    assert abs(steps(bench, group) - steps(demo, group)) < bench.data.generate.num_train / bench[group].train.batch_size


CURVES = {"steps": [0, 1, 2], "seed_miou": [0.30, 0.33, 0.31], "best_threshold": [0.4, 0.5, 0.55],
          "noise_threshold": 0.25, "added_pixels": [0, 50, 100], "noise_proportion": [None, 0.5, 0.7],
          "amplification_discriminative": [1.0, 1.6, 2.4], "amplification_non_discriminative": [1.0, 1.2, 1.5]}


def fake_chain(fake_stages, seed: dict[str, float]):
    """Fake stages writing the metrics a chain writes: seeds ``seed[cam.name]``, +CRF 5 and masks 10 points
    higher, and AdvCAM's climb curves."""
    def make_cam(cfg):
        if cfg.cam.analysis:
            atomic_save_json(analysis_path(cfg), CURVES)

    fake_stages.on_run = {
        "make_cam": make_cam,
        "eval_cam": lambda cfg: atomic_save_json(cfg.artifacts.cam_metrics, {
            "seed_miou": seed[cfg.cam.name], "seed_crf_miou": seed[cfg.cam.name] + 0.05, "best_threshold": 0.45}),
        "eval_sem_seg": lambda cfg: atomic_save_json(cfg.artifacts.sem_seg_metrics, {"miou": seed[cfg.cam.name] + 0.1}),
    }
    return fake_stages


def cells(out: str, label: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.startswith(label + " "))
    return re.split(r"\s+", line[len(label):].strip())


def test_table1_the_climb_curve_and_why_advcam_loses_come_from_the_metrics_files(
    bench_chain, fake_stages, synthetic_root, tmp_path, capsys
):
    fake_chain(fake_stages, {"cam": 0.35, "advcam": 0.31})
    result = bench_chain.main(["--out", str(tmp_path), *DATA, f"data.root={synthetic_root}"])
    assert fake_stages.runs == [("train_cam", "cam"), *((s, "cam") for s in CHAIN), *((s, "advcam") for s in CHAIN)]

    out = capsys.readouterr().out
    assert cells(out, "CAM") == ["35.0", "40.0", "45.0", "0.45"]
    assert cells(out, "AdvCAM") == ["31.0", "36.0", "41.0", "0.45"]
    assert cells(out, "AdvCAM − CAM") == ["-4.0", "-4.0", "-4.0", "-"]
    background = f"{100 * all_background_miou(synthetic_root, 'train'):.1f}"
    assert cells(out, "all background") == [background] * 3 + ["-"]
    assert cells(out, "paper, VOC: AdvCAM") == ["55.6", "62.1", "69.9", "-"]
    assert cells(out, "2") == ["31.0", "0.55", "70.0", "2.40", "1.50"]  # the curve's last step
    assert cells(out, "0") == ["30.0", "0.40", "-", "1.00", "1.00"]
    assert "AdvCAM − CAM seed mIoU: -4.0 points (paper, VOC: +6.8)" in out
    assert "discriminative ×2.40, the rest ×1.50" in out and "does not raise the non-discriminative parts" in out
    assert "70.0 % are background in the GT — most of what the climb adds is background" in out
    assert "seed along the climb: 30.0 at t = 0, best 33.0 at t = 1, 31.0 at t = 2" in out
    assert re.search(r"^make_cam\s+\d+\s+\d+$", out, re.MULTILINE)  # a wall time per method

    written = json.loads((tmp_path / "bench_chain.json").read_text())
    assert written["rows"]["AdvCAM"] == pytest.approx({"seed": 0.31, "seed_crf": 0.36, "mask": 0.41, "best_threshold": 0.45})
    assert written["curves"]["seed_miou"] == CURVES["seed_miou"] and written["reading"] == result["reading"]
    assert written["settings"]["T"] == 27 and written["settings"]["scales"] == [1.0, 0.5, 1.5, 2.0]
    assert set(written["stage_seconds"]["CAM"]) == {"train_cam", *CHAIN}

    fake_stages.runs.clear()
    bench_chain.main(["--out", str(tmp_path), *DATA, f"data.root={synthetic_root}"])
    assert fake_stages.runs == []  # everything complete: a second run only prints
    assert cells(capsys.readouterr().out, "make_cam") == ["-", "-"]


def test_when_advcam_wins_the_reading_says_so_without_the_analysis(bench_chain, fake_stages, synthetic_root,
                                                                   tmp_path, capsys):
    fake_chain(fake_stages, {"cam": 0.30, "advcam": 0.36})
    result = bench_chain.main(["--out", str(tmp_path), *DATA, f"data.root={synthetic_root}"])
    assert result["reading"] == ["AdvCAM − CAM seed mIoU: +6.0 points (paper, VOC: +6.8).",
                                 "AdvCAM beats CAM on the seeds."]


def test_a_synthetic_set_of_other_settings_is_refused_naming_the_file(bench_chain, fake_stages, synthetic_root,
                                                                      tmp_path):
    with pytest.raises(SystemExit, match=r"synthetic\.json was generated with other settings \(num_train: 24 there, "
                                         r"7 asked"):
        bench_chain.main(["--out", str(tmp_path), *DATA[2:], "--num-images", "7", f"data.root={synthetic_root}"])
    assert fake_stages.runs == []


def test_threads_reach_every_stage_as_num_threads(bench_chain, fake_stages, synthetic_root, tmp_path):
    """`--threads 1` must survive the experiment's `num_threads: cores`, which run_pipeline applies per stage."""
    fake_chain(fake_stages, {"cam": 0.35, "advcam": 0.31})
    before = torch.get_num_threads()
    try:
        result = bench_chain.main(["--out", str(tmp_path), *DATA, f"data.root={synthetic_root}", "--threads", "1"])
        assert result["settings"]["torch_threads"] == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
