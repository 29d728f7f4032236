"""CCT's perturbations: OpenCV-equivalent contours, G-Cutout, masks, F-Drop, F-Noise, dropout, VAT."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from scipy import ndimage

from advcam_pl.models.cct import perturbations as P
from advcam_pl.models.cct.contours import external_contours
from advcam_pl.models.cct.decoders import DecoderHead, DropOutDecoder

YY, XX = np.mgrid[:320, :320]


def disk(radius: int, cy: int = 160, cx: int = 160) -> np.ndarray:
    return ((YY - cy) ** 2 + (XX - cx) ** 2 <= radius * radius).astype(np.uint8)


def prediction(foreground: np.ndarray) -> torch.Tensor:
    """Scores ``[1, 21, H, W]`` whose argmax is class 1 on ``foreground``, background elsewhere."""
    pred = torch.zeros(1, 21, *foreground.shape)
    pred[0, 0] = 1.0
    pred[0, 1] = 2.0 * torch.from_numpy(foreground).float()
    return pred


def test_contour_point_counts_follow_chain_approx_simple():
    square = np.zeros((320, 320), np.uint8)
    square[60:260, 60:260] = 1
    (contour,) = external_contours(square)
    assert len(contour) == 4 and contour.bbox == (60, 60, 259, 259)
    assert [len(c) for c in external_contours(disk(10))] == [36]
    assert [len(c) for c in external_contours(disk(20))] == [68]
    ring = disk(80) - disk(40)  # a hole with a blob inside: RETR_EXTERNAL gives the outer border only
    ring[150:170, 150:170] = 1
    assert [len(c) for c in external_contours(ring)] == [len(external_contours(disk(80))[0])]
    assert len(external_contours(np.pad(np.ones((1, 1), np.uint8), 3))[0]) == 1


def test_contours_match_opencv_on_random_masks():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for _ in range(40):
        mask = ndimage.binary_opening(rng.random((60, 70)) < rng.uniform(0.3, 0.7)).astype(np.uint8)
        found, _ = cv2.findContours(mask.copy(), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        ref = sorted(tuple(map(tuple, c.reshape(-1, 2))) for c in found)
        assert sorted(tuple(map(tuple, c.points)) for c in external_contours(mask)) == ref


def test_guided_cutout_spares_rectangles_and_cuts_a_16_percent_box_from_a_large_disk():
    square = np.zeros((320, 320), np.uint8)
    square[60:260, 60:260] = 1
    assert P.Guidance(prediction(square)).object_boxes == [[]]
    assert P.Guidance(prediction(np.zeros((320, 320), np.uint8))).object_boxes == [[]]
    guide = P.Guidance(prediction(disk(80)))
    assert guide.object_boxes == [[(80, 80, 240, 240)]]
    for seed in range(5):
        keep = P.cutout_mask(guide.object_boxes, (320, 320), 0.4, random.Random(seed))[0].numpy()
        rows, cols = np.nonzero(keep == 0)
        side = int(0.4 * 160)  # int(0.4 · (max − min)), as the official code measures the box
        assert len(rows) == side * side
        assert rows.max() - rows.min() + 1 == side and cols.max() - cols.min() + 1 == side
        assert rows.min() >= 80 and cols.min() >= 80 and rows.max() <= 240 and cols.max() <= 240
    # min_points=0 cuts the square as well
    assert P.Guidance(prediction(square), min_points=0).object_boxes == [[(60, 60, 259, 259)]]


def test_guided_cutout_multiplies_the_resized_mask_into_z():
    random.seed(0)
    z = torch.rand(1, 8, 40, 40) + 0.1
    out = P.guided_cutout(z, P.Guidance(prediction(disk(80))))
    zeroed = (out == 0).all(1)[0]
    assert 0 < zeroed.sum() <= 8 * 8 + 2 * 9 and torch.equal(out[:, :, ~zeroed], z[:, :, ~zeroed])


def test_context_and_object_masks_split_z():
    torch.manual_seed(0)
    z = torch.randn(2, 8, 40, 40)
    pred = torch.cat([prediction(disk(80)), prediction(disk(30, 100, 200))])
    guide = P.Guidance(pred)
    context, objects = P.context_mask(z, guide), P.object_mask(z, guide)
    torch.testing.assert_close(context + objects, z)
    centre = (slice(None), slice(None), 20, 20)
    assert torch.equal(context[0][centre[1:]], z[0][centre[1:]]) and (objects[0, :, 20, 20] == 0).all()
    assert (context[:, :, 0, 0] == 0).all()


def test_feature_noise_is_multiplicative_uniform_and_shared_by_the_batch():
    torch.manual_seed(0)
    z = torch.rand(4, 64, 10, 10) + 0.5
    ratio = P.feature_noise(z, 0.3) / z
    assert 0.7 <= ratio.min() and ratio.max() <= 1.3 and ratio.min() < 0.72 and ratio.max() > 1.28
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio))
    per_sample = P.feature_noise(z, 0.3, per_sample=True) / z
    assert not torch.allclose(per_sample[0], per_sample[1])


def test_feature_drop_zeroes_the_positions_above_one_gamma_times_the_max():
    np.random.seed(0)
    torch.manual_seed(0)
    z = torch.rand(3, 16, 12, 12)
    for _ in range(5):
        out = P.feature_drop(z)
        attention = z.mean(1)
        ratio = attention / attention.flatten(1).max(1).values.view(-1, 1, 1)
        dropped = (out == 0).all(1)
        kept_max = max(r[~d].max().item() for r, d in zip(ratio, dropped))
        dropped_min = min(r[d].min().item() for r, d in zip(ratio, dropped))
        # one γ for the whole batch, between the kept and the dropped ratios, inside [0.7, 0.9]
        assert kept_max < dropped_min and kept_max < 0.9 and dropped_min >= 0.7
        assert dropped.flatten(1).gather(1, attention.flatten(1).argmax(1, keepdim=True)).all()
        assert torch.equal(out[~dropped.unsqueeze(1).expand_as(out)], z[~dropped.unsqueeze(1).expand_as(z)])


def test_spatial_dropout_zeroes_whole_channels_and_doubles_the_rest():
    torch.manual_seed(0)
    decoder = DropOutDecoder(512, 21).train()
    z = torch.rand(4, 512, 6, 6) + 0.1
    out = decoder.perturb(z, None)
    zeroed = (out == 0).all(-1).all(-1)
    assert ((out == 0).any(-1).any(-1) == zeroed).all()  # never part of a channel
    torch.testing.assert_close(out[~zeroed], 2 * z[~zeroed])
    assert 0.45 < zeroed.float().mean() < 0.55


@pytest.fixture
def vat_setup():
    torch.manual_seed(0)
    head = DecoderHead(16, 21, upscale=2)
    z = torch.relu(torch.randn(2, 16, 6, 6))
    return head, z


def probe_gradient_norm(z, head, xi):
    """``‖g‖`` per sample of VAT's power iteration, computed independently of the implementation."""
    target = torch.softmax(head(z), 1).detach()
    d = torch.rand_like(z) - 0.5
    d = (d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).requires_grad_(True)
    kl = torch.nn.functional.kl_div(torch.log_softmax(head(z + xi * d), 1), target, reduction="batchmean")
    return torch.autograd.grad(kl, d)[0].flatten(1).norm(dim=1)


def test_vat_direction_has_norm_eps_per_sample_and_leaves_no_parameter_grads(vat_setup):
    head, z = vat_setup
    z.requires_grad_(True)
    r_adv = P.vat_perturbation(z, head, xi=1e-1, eps=2.0)
    torch.testing.assert_close(r_adv.flatten(1).norm(dim=1), torch.full((2,), 2.0), rtol=1e-5, atol=0)
    assert all(p.grad is None for p in head.parameters()) and z.grad is None
    assert not r_adv.requires_grad
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the probe runs in float32 under AMP
        r_amp = P.vat_perturbation(z, head, xi=1e-1, eps=2.0)
    assert r_amp.dtype == torch.float32 and all(p.grad is None for p in head.parameters())
    torch.testing.assert_close(r_amp.flatten(1).norm(dim=1), torch.full((2,), 2.0), rtol=1e-5, atol=0)


def test_official_xi_leaves_vat_nearly_unperturbed_unless_the_norm_floor_is_dropped(vat_setup):
    head, z = vat_setup
    torch.manual_seed(1)
    grad_norm = probe_gradient_norm(z.detach(), head, 1e-6)
    assert (grad_norm < 1e-9).all()  # xi² scale: far below the official normalisation's 1e-8
    torch.manual_seed(1)
    r_official = P.vat_perturbation(z, head, xi=1e-6, eps=2.0)
    expected = 2.0 * grad_norm / (grad_norm + 1e-8)
    torch.testing.assert_close(r_official.flatten(1).norm(dim=1), expected, rtol=1e-3, atol=1e-6)
    assert (r_official.flatten(1).norm(dim=1) < 0.2).all()
    r_exact = P.vat_perturbation(z, head, xi=1e-6, eps=2.0, norm_floor=0)
    torch.testing.assert_close(r_exact.flatten(1).norm(dim=1), torch.full((2,), 2.0), rtol=1e-5, atol=0)


def test_vat_direction_is_more_adversarial_than_a_random_one(vat_setup):
    head, z = vat_setup
    target = torch.softmax(head(z), 1).detach()

    def kl(r):
        return torch.nn.functional.kl_div(torch.log_softmax(head(z + r), 1), target, reduction="batchmean")

    wins = 0
    for seed in range(5):
        torch.manual_seed(seed)
        r_adv = P.vat_perturbation(z, head, xi=1e-1, eps=0.5)
        r_rand = P.l2_normalize(torch.randn_like(z)) * 0.5
        wins += bool(kl(r_adv) >= kl(r_rand))
    assert wins == 5
