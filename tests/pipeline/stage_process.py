"""A pipeline run in a child process, for the tests that kill it:

    python stage_process.py <seconds> <what to slow down> <hydra overrides...>

``what``: ``ir_label`` (each image of make_ir_label), ``cam`` (each predict step of make_cam) or
``train_step`` (each CAM classifier step),
slowed by ``seconds`` so that a signal lands in the middle of the stage. Exits as the pipeline does
(143 after SIGTERM)."""

import sys
import time

import torch


def slow_down(owner, name: str, seconds: float) -> None:
    original = getattr(owner, name)

    def slowed(*args, **kwargs):
        time.sleep(seconds)
        return original(*args, **kwargs)

    setattr(owner, name, slowed)


if __name__ == "__main__":
    torch.set_num_threads(1)
    seconds, what, *overrides = sys.argv[1:]
    if what == "ir_label":
        import advcam_pl.pipeline.make_ir_label as owner

        slow_down(owner, "write_ir_label", float(seconds))
    elif what == "cam":
        from advcam_pl.advcam.writer import CAMPredictor as owner

        slow_down(owner, "predict_step", float(seconds))
    elif what == "train_step":
        from advcam_pl.models.cam_classifier import CAMClassifier as owner

        slow_down(owner, "training_step", float(seconds))
    from advcam_pl.config import compose_config
    from advcam_pl.pipeline import run_pipeline

    run_pipeline(compose_config(overrides))
