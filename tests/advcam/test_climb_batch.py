"""Many images per climb: adv_climb_batch equals adv_climb image by image; the options object;
precision switches (TF32, torch.compile)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from advcam_testing import TinyCAMNet, relative_error

from advcam_pl.advcam import ClimbOptions, adv_climb, adv_climb_batch, climb, modes

SCALES = (1.0, 0.5)
# (H, W) and classes: two images of one size, one of another, its transpose, and one without class
BATCH = [((33, 47), [3]), ((33, 47), [0, 7, 19]), ((40, 56), [2, 5]), ((47, 33), [4, 9]), ((33, 47), [])]


def image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model() -> TinyCAMNet:
    return TinyCAMNet(seed=0).eval()


def batch_inputs() -> tuple[list[torch.Tensor], list[list[int]]]:
    return [image(*size, seed=i) for i, (size, _) in enumerate(BATCH)], [c for _, c in BATCH]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"chunk_size": 3},  # chunks that cut through an image's classes
        {"lam": 0.0, "suppress_others": "present", "attribution": "cam"},
        {"clamp": "initial", "step_norm": "none", "step_size": 0.5, "accumulate": "include_last"},
    ],
)
def test_batch_equals_one_image_at_a_time(model, options):
    images, classes = batch_inputs()
    batched = adv_climb_batch(model, images, classes, steps=4, scales=SCALES, **options)
    assert len(batched) == len(images)
    for img, keys, got in zip(images, classes, batched):
        alone = adv_climb(model, img, keys, steps=4, scales=SCALES, **options)
        assert torch.equal(got.keys, alone.keys)
        assert got.high_res.shape == (len(keys), *img.shape[-2:])
        if keys:
            assert relative_error(got.high_res, alone.high_res) < 1e-5
            assert relative_error(got.cam, alone.cam) < 1e-5
    empty = batched[-1]
    assert empty.keys.shape == (0,) and empty.cam.shape == (0, 9, 12) and empty.high_res.shape == (0, 33, 47)


def test_batch_of_pre_scaled_images_with_sizes_and_trajectories(model):
    images, classes = batch_inputs()
    pre_scaled = [[img, F.interpolate(img[None], scale_factor=0.5, mode="bilinear")[0]] for img in images]
    sizes = [tuple(img.shape[-2:]) for img in images]
    batched = adv_climb_batch(model, pre_scaled, classes, scales=SCALES, sizes=sizes, steps=3,
                              record_trajectory=True)
    for pre, keys, size, got in zip(pre_scaled, classes, sizes, batched):
        alone = adv_climb(model, pre, keys, scales=SCALES, size=size, steps=3, record_trajectory=True)
        if not keys:
            assert got.trajectory is None
            continue
        assert relative_error(got.high_res, alone.high_res) < 1e-5
        assert got.trajectory.high_res.shape == alone.trajectory.high_res.shape == (3, len(keys), *size)
        assert relative_error(got.trajectory.high_res, alone.trajectory.high_res) < 1e-5
        assert relative_error(got.trajectory.score, alone.trajectory.score) < 1e-5


def test_climbs_of_one_size_share_a_batch(model, monkeypatch):
    rows = []
    original = climb._climb_chunk_fast

    def counting(model, pairs, keys, *args, **kwargs):
        rows.append((tuple(pairs.shape[-2:]), len(keys)))
        return original(model, pairs, keys, *args, **kwargs)

    monkeypatch.setattr(climb, "_climb_chunk_fast", counting)
    images, classes = batch_inputs()
    adv_climb_batch(model, images, classes, steps=2, scales=(1.0,))
    assert sorted(rows) == sorted([((33, 47), 4), ((40, 56), 2), ((47, 33), 2)])  # no padding, no empty rows


def test_identical_climbs_in_one_batch_stay_identical(model):
    """Each (image, class) climb is normalised, clamped and masked on its own: a bright copy of
    an image beside it changes nothing."""
    img = image(32, 40, 3)
    bright = img * 4 + 2
    first, second, other = adv_climb_batch(model, [img, img, bright], [[1, 6], [1, 6], [1, 6]], steps=4,
                                           scales=(1.0,))
    alone = adv_climb(model, img, [1, 6], steps=4, scales=(1.0,))
    assert torch.equal(first.high_res, second.high_res)
    assert relative_error(first.high_res, alone.high_res) < 1e-5
    assert relative_error(other.high_res, first.high_res) > 1e-3


def test_oom_halves_the_batch_across_images(model, monkeypatch):
    original = climb._climb_chunk_fast
    calls = []

    def flaky(model, pairs, keys, *args, **kwargs):
        calls.append(len(keys))
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(model, pairs, keys, *args, **kwargs)

    monkeypatch.setattr(climb, "_climb_chunk_fast", flaky)
    images = [image(32, 40, s) for s in range(3)]
    classes = [[0, 3], [5], [8]]
    results = adv_climb_batch(model, images, classes, steps=2, scales=SCALES)
    assert calls == [4, 2, 2, 2, 2]
    assert all(r.chunk_size == 2 for r in results)
    monkeypatch.setattr(climb, "_climb_chunk_fast", original)
    for img, keys, got in zip(images, classes, results):
        assert relative_error(got.high_res, adv_climb(model, img, keys, steps=2, scales=SCALES).high_res) < 1e-5


def test_reference_batch_equals_fast_batch(model):
    images, classes = batch_inputs()
    ref = adv_climb_batch(model, images[:3], classes[:3], steps=3, scales=SCALES, impl="reference")
    fast = adv_climb_batch(model, images[:3], classes[:3], steps=3, scales=SCALES)
    for r, f in zip(ref, fast):
        assert relative_error(f.high_res, r.high_res) < 1e-4
        assert r.chunk_size is None


def test_batch_arguments_must_match(model):
    with pytest.raises(ValueError, match="class lists"):
        adv_climb_batch(model, [image(32, 32)], [[1], [2]])
    with pytest.raises(ValueError, match="sizes"):
        adv_climb_batch(model, [image(32, 32)], [[1]], sizes=[None, None])


# ---- the options object ----------------------------------------------------------------------


def test_options_object_and_keywords_agree(model):
    img = image(36, 44)
    opts = ClimbOptions(steps=3, lam=0.0, tau=0.3)
    by_object = adv_climb(model, img, [2, 5], opts, scales=SCALES)
    by_keywords = adv_climb(model, img, [2, 5], steps=3, lam=0.0, tau=0.3, scales=SCALES)
    assert torch.equal(by_object.high_res, by_keywords.high_res)
    overridden = adv_climb(model, img, [2, 5], opts, lam=7.0, scales=SCALES)  # keywords win
    assert torch.equal(overridden.high_res, adv_climb(model, img, [2, 5], steps=3, tau=0.3, scales=SCALES).high_res)


def test_unknown_option_is_named(model):
    with pytest.raises(TypeError, match="lamda"):
        adv_climb(model, image(32, 32), [1], lamda=3.0)
    with pytest.raises(TypeError, match="ClimbOptions"):
        adv_climb(model, image(32, 32), [1], {"steps": 3})


def test_options_defaults_are_the_official_ones():
    opts = ClimbOptions()
    assert (opts.steps, opts.step_size, opts.lam, opts.tau) == (27, 0.08, 7.0, 0.5)
    assert (opts.suppress_others, opts.attribution, opts.step_norm, opts.clamp, opts.accumulate) == (
        True, "gradcam", "linf", "current", "before_step")
    assert opts.half_steps_at_half_scale and opts.impl == "fast"
    assert (opts.chunk_size, opts.autocast, opts.channels_last, opts.tf32, opts.compile) == (None, None, False, None, False)
    assert ClimbOptions(lam=7, steps="27").lam == 7.0 and isinstance(ClimbOptions(steps=27.0).steps, int)
    assert opts.num_maps() == 27 and ClimbOptions(accumulate="include_last").num_maps(13) == 14


@pytest.mark.parametrize(
    ("bad", "match"),
    [({"steps": 0}, "steps"), ({"impl": "slow"}, "impl"), ({"tf32": "yes"}, "tf32"),
     ({"chunk_size": 0}, "chunk_size"), ({"autocast_dtype": "fp8"}, "autocast_dtype"),
     ({"impl": "reference", "compile": True}, "reference")],
)
def test_bad_option_values_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        ClimbOptions(**bad)


# ---- precision switches ----------------------------------------------------------------------


@pytest.mark.parametrize("enabled", [True, False])
def test_tf32_switch_is_set_inside_and_restored(enabled):
    def flags():
        return (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
                torch.get_float32_matmul_precision())  # what Lightning reads; must not raise

    before = flags()
    with modes.tf32(enabled):
        assert flags() == (enabled, enabled, "high" if enabled else "highest")
        if hasattr(torch.backends.cudnn, "conv"):  # torch >= 2.9: the per-operator view agrees
            assert (torch.backends.cudnn.conv.fp32_precision == "tf32") == enabled
    assert flags() == before
    with modes.tf32(None):
        assert flags() == before


def test_tf32_option_leaves_cpu_results_alone(model):
    img = image(32, 40)
    plain = adv_climb(model, img, [1, 2], steps=3, scales=SCALES)
    for value in (True, False):
        assert torch.equal(adv_climb(model, img, [1, 2], steps=3, scales=SCALES, tf32=value).high_res, plain.high_res)


def _compiled_with(backend: str, monkeypatch) -> list:
    """Make ``compile=True`` use ``torch.compile(..., backend=backend)``; returns the compiled fns."""
    compiled = []
    real_compile = torch.compile

    def compile_with_backend(fn, **kwargs):
        compiled.append(fn)
        return real_compile(fn, backend=backend, **kwargs)

    torch._dynamo.reset()
    monkeypatch.setattr(climb, "_compiled_class_maps", None)
    monkeypatch.setattr(torch, "compile", compile_with_backend)
    return compiled


def test_compiled_step_matches_eager_traced(model, monkeypatch):
    """Dynamo + AOTAutograd (forward and input-gradient backward traced), without code generation."""
    compiled = _compiled_with("aot_eager", monkeypatch)
    img = image(32, 40)
    eager = adv_climb(model, img, [1, 4], steps=3, scales=(1.0,))
    traced = adv_climb(model, img, [1, 4], steps=3, scales=(1.0,), compile=True)
    assert compiled == [climb.class_maps]
    assert relative_error(traced.high_res, eager.high_res) < 1e-5


@pytest.mark.slow
def test_compiled_step_matches_eager_inductor(model, monkeypatch):
    """The real ``torch.compile`` (Inductor, C++ kernels on CPU): ~1-2 min on a small CPU."""
    compiled = _compiled_with("inductor", monkeypatch)
    img = image(32, 40)
    eager = adv_climb(model, img, [1, 4], steps=3, scales=(1.0,))
    fast = adv_climb(model, img, [1, 4], steps=3, scales=(1.0,), compile=True)
    assert len(compiled) == 1
    assert relative_error(fast.high_res, eager.high_res) < 1e-4


def test_options_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ClimbOptions().steps = 3
