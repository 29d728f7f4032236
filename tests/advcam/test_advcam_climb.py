"""AdvCAM climbing: fast == reference, Grad-CAM closed form, regularisers, trajectory, OOM halving."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from advcam_testing import TinyCAMNet, relative_error

from advcam_pl.advcam import adv_climb, climb, compute_cam
from advcam_pl.advcam.equations import attribution_map, positive_weight_counts, restoring_mask
from advcam_pl.advcam.views import scale_steps

SCALES = (1.0, 0.5)


def image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model() -> TinyCAMNet:
    return TinyCAMNet(seed=0).eval()


@pytest.mark.parametrize(
    ("size", "classes", "options"),
    [
        ((33, 47), [3], {}),
        ((48, 64), [0, 7, 19], {"chunk_size": 2}),
        ((40, 56), [2, 5], {"lam": 0.0, "suppress_others": False}),
        ((37, 29), [4, 9], {"suppress_others": "present", "attribution": "cam"}),
        ((32, 48), [1, 6], {"clamp": "initial", "step_norm": "none", "step_size": 0.5,
                            "accumulate": "include_last"}),
    ],
)
def test_fast_matches_reference(model, size, classes, options):
    img = image(*size, seed=len(classes))
    kwargs = dict(steps=4, scales=SCALES, **options)
    ref = adv_climb(model, img, classes, impl="reference", **kwargs)
    fast = adv_climb(model, img, classes, impl="fast", **kwargs)
    assert fast.high_res.shape == (len(classes), *size)
    assert fast.cam.shape == (len(classes), -(-size[0] // 4), -(-size[1] // 4))
    assert torch.equal(fast.keys, ref.keys)
    assert relative_error(fast.high_res, ref.high_res) < 1e-4
    assert relative_error(fast.cam, ref.cam) < 1e-4
    # the climb did something: the maps differ from the step-0 maps
    first = adv_climb(model, img, classes, impl="fast", **{**kwargs, "steps": 1})
    assert relative_error(fast.high_res, first.high_res) > 1e-3


def test_fast_matches_reference_on_the_cam_classifier():
    """The real classifier: ResNet with frozen BN and frozen conv1, parameters requiring grad."""
    from advcam_pl.models.cam_classifier import CAMClassifier

    torch.manual_seed(0)
    classifier = CAMClassifier(depth=18, pretrained=None)
    img = image(40, 56, 5)
    ref = adv_climb(classifier, img, [2, 9], steps=3, scales=SCALES, impl="reference")
    fast = adv_climb(classifier, img, [2, 9], steps=3, scales=SCALES)
    assert relative_error(fast.high_res, ref.high_res) < 1e-4
    assert all(p.grad is None for p in classifier.parameters())


def test_gradcam_closed_form_equals_official_backward(model):
    """ReLU(S_c)·n_b/N⁺ is what the official Grad-CAM (second backward, gap2d_pos) computes."""
    x = torch.stack([image(40, 56, 1), image(40, 56, 1).flip(-1)])
    weight = model.classifier.weight
    for c in (0, 11):
        feats = model.features(x.requires_grad_(True))
        s = F.conv2d(feats, weight)
        official = climb._official_gradcam(feats, s, c)  # [2, h, w]
        official = official[0] + official[1].flip(-1)
        closed = attribution_map(s[None, :, c], positive_weight_counts(weight)[[c]])[0]
        assert relative_error(closed, official) < 1e-5
        assert official.abs().max() > 0


def test_single_step_cam_attribution_equals_compute_cam(model):
    img = image(45, 61)
    cam = compute_cam(model, img, [2, 8, 13], scales=SCALES)
    adv = adv_climb(model, img, [2, 8, 13], steps=1, attribution="cam", scales=SCALES)
    assert torch.allclose(adv.high_res, cam.high_res, atol=1e-6)
    assert torch.allclose(adv.cam, cam.cam, atol=1e-6)
    assert cam.high_res.amax((1, 2)).sub(1).abs().max() < 1e-3  # max-normalised


def test_compute_cam_follows_irn_make_cam(model):
    """One scale by hand: ReLU(S[0]) + flip(ReLU(S[1])), bilinear up, crop, / (max + 1e-5)."""
    img = image(35, 50)
    ours = compute_cam(model, img, [4], scales=(1.0,))
    with torch.no_grad():
        s = F.relu(model.classifier(model.features(torch.stack([img, img.flip(-1)]))))
    raw = (s[0, 4] + s[1, 4].flip(-1))[None, None]
    high = F.interpolate(raw, (48, 64), mode="bilinear", align_corners=False)[0, :, :35, :50]
    high = high / (high.amax() + 1e-5)
    assert torch.allclose(ours.high_res, high, atol=1e-6)


def test_target_logit_rises_over_the_climb(model):
    result = adv_climb(model, image(48, 64, 3), [1, 5, 7], steps=5, scales=(1.0,), lam=0.0,
                       suppress_others=False, record_trajectory=True)
    score = result.trajectory.score  # [T, n]
    assert score.shape == (5, 3)
    assert (score[1:] > score[:-1]).all()
    # the restoring loss slows the climb but does not stop it
    result = adv_climb(model, image(48, 64, 3), [1, 5, 7], steps=5, scales=(1.0,), lam=7.0,
                       suppress_others=False, record_trajectory=True)
    assert (result.trajectory.score[-1] > result.trajectory.score[0]).all()


def test_restoring_loss_keeps_the_masked_region(model):
    """With λ > 0 the attribution inside M = 1[A_0/max > τ] stays nearer its start than with λ = 0."""

    def drift(lam: float) -> torch.Tensor:
        result = adv_climb(model, image(64, 80), [1, 5, 7], steps=6, scales=(1.0,), lam=lam,
                           record_trajectory=True)
        a = result.trajectory.attribution  # [T, n, h, w]
        mask = restoring_mask(a[0], 0.5).bool()
        return torch.stack([(a[-1, i] - a[0, i]).abs()[mask[i]].mean() / a[0, i][mask[i]].mean()
                            for i in range(a.shape[1])])

    free, restored = drift(0.0), drift(7.0)
    assert (restored < free).all()
    assert restored.mean() < 0.7 * free.mean()


def test_trajectory_entry_t_equals_a_climb_of_t_plus_one_steps(model):
    img = image(40, 52)
    full = adv_climb(model, img, [3, 9], steps=7, scales=SCALES, record_trajectory=True)
    assert full.trajectory.high_res.shape == (7, 2, 40, 52)
    assert torch.allclose(full.trajectory.high_res[-1], full.high_res)
    for k in (1, 6):  # scale 0.5 runs 1 and 5 of its own steps
        short = adv_climb(model, img, [3, 9], steps=k, scales=SCALES)
        assert torch.allclose(full.trajectory.high_res[k - 1], short.high_res, atol=1e-6)


def test_half_steps_rule():
    assert [scale_steps(t, 0.5) for t in (1, 5, 6, 10, 11, 27)] == [1, 5, 5, 5, 5, 13]
    assert scale_steps(27, 1.0) == 27 and scale_steps(27, 0.5, half_steps_at_half_scale=False) == 27


def test_list_input_and_explicit_size(model):
    img = image(36, 44)
    pre_scaled = [img, F.interpolate(img[None], (18, 22), mode="bicubic", align_corners=False,
                                     antialias=True)[0]]
    a = adv_climb(model, img, [2], steps=3, scales=SCALES)
    b = adv_climb(model, pre_scaled, [2], steps=3, scales=SCALES)
    c = adv_climb(model, pre_scaled[::-1], [2], steps=3, scales=SCALES[::-1])
    assert torch.allclose(a.high_res, b.high_res, atol=1e-5)
    assert torch.allclose(b.high_res, c.high_res, atol=1e-5)
    d = adv_climb(model, pre_scaled[1:], [2], steps=3, scales=(0.5,), size=(36, 44))
    assert d.high_res.shape == (1, 36, 44)
    with pytest.raises(ValueError, match="size"):
        adv_climb(model, pre_scaled[1:], [2], steps=3, scales=(0.5,))


def test_no_present_class_gives_empty_maps(model):
    result = adv_climb(model, image(33, 47), [], steps=3, scales=SCALES)
    assert result.keys.shape == (0,)
    assert result.cam.shape == (0, 9, 12) and result.high_res.shape == (0, 33, 47)


def test_fast_restores_the_model(model):
    model.train()
    model.body[0].weight.requires_grad_(False)
    adv_climb(model, image(32, 32), [1], steps=2, scales=(1.0,), channels_last=True)
    assert model.training and model.body[3].training
    assert not model.body[0].weight.requires_grad and model.classifier.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert model.body[0].weight.is_contiguous()
    model.body[0].weight.requires_grad_(True)
    model.eval()


def test_channels_last_and_bf16_autocast(model):
    img = image(40, 48)
    ref = adv_climb(model, img, [1, 2], steps=3, scales=SCALES)
    cl = adv_climb(model, img, [1, 2], steps=3, scales=SCALES, channels_last=True)
    assert relative_error(cl.high_res, ref.high_res) < 1e-4
    bf16 = adv_climb(model, img, [1, 2], steps=3, scales=SCALES, autocast_dtype="bf16")
    assert bf16.high_res.dtype == torch.float32
    assert relative_error(bf16.high_res, ref.high_res) < 0.1


def test_cuda_oom_halves_the_chunk_and_retries(model, monkeypatch):
    original = climb._climb_chunk_fast
    calls = []

    def flaky(model, pair, keys, *args, **kwargs):
        calls.append(len(keys))
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(model, pair, keys, *args, **kwargs)

    monkeypatch.setattr(climb, "_climb_chunk_fast", flaky)
    img = image(32, 40)
    result = adv_climb(model, img, [0, 3, 5, 8], steps=2, scales=SCALES, chunk_size=4)
    assert calls == [4, 2, 2, 2, 2]  # the failed 4, then 2 + 2 at each scale
    assert result.chunk_size == 2
    monkeypatch.setattr(climb, "_climb_chunk_fast", original)
    clean = adv_climb(model, img, [0, 3, 5, 8], steps=2, scales=SCALES)
    assert relative_error(result.high_res, clean.high_res) < 1e-5


def test_oom_with_a_single_class_is_raised(model, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(climb, "_climb_chunk_fast", oom)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        adv_climb(model, image(32, 32), [1], steps=2, scales=(1.0,))


def test_bad_options_are_rejected(model):
    with pytest.raises(ValueError, match="clamp"):
        adv_climb(model, image(32, 32), [1], clamp="paper")
    with pytest.raises(ValueError, match="reference"):
        adv_climb(model, image(32, 32), [1], impl="reference", autocast_dtype="bf16")
