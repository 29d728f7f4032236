"""CCT training: ramp-up and learning-rate values, loss composition, gradient routing, multi-scale
inference, the config group."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from cct_testing import tiny_cct
from hydra.utils import instantiate

from advcam_pl.config import compose_config
from advcam_pl.models.cct import CCT
from advcam_pl.models.cct.inference import multi_scale_predict
from advcam_pl.models.cct.losses import (
    loss_weights,
    rampup_length,
    softmax_mse,
    unsupervised_loss,
    weak_loss,
)
from advcam_pl.training.schedule import poly_factor


def test_rampup_weights_at_the_official_iterations():
    length = rampup_length(0.1, 80, 912)
    assert length == 7296
    expected = {0: 0.20214, 912: 0.65251, 3648: 8.59514, 5472: 21.94847, 7296: 30.0, 10_000: 30.0}
    for step, w_u in expected.items():
        got_u, got_w = loss_weights(step, length)
        assert got_u == pytest.approx(w_u, abs=5e-6), step
        assert got_w == pytest.approx(0.4 * got_u / 30, rel=1e-12)
    assert rampup_length(0.1, 9, 100) == 0 and loss_weights(0, 0) == (30.0, 0.4)  # int(0.9) whole epochs


def test_poly_learning_rates_of_the_two_groups():
    model = tiny_cct(max_steps=80 * 912)
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    assert [g["name"] for g in optimizer.param_groups] == ["heads", "backbone"]
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["weight_decay"] == 1e-4
    for step, factor in {0: 1.0, 912: 0.988743, 36480: 0.535887}.items():
        lrs = [base * lam(step) for base, lam in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
        assert lrs[0] == pytest.approx(1e-2 * factor, rel=1e-5) and lrs[0] / lrs[1] == pytest.approx(10)
    assert 1e-2 * poly_factor(80 * 912 - 1, 80 * 912) == pytest.approx(4.2e-7, rel=0.01)
    optimizer.step()
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-2 * poly_factor(1, 72960), 1e-3 * poly_factor(1, 72960)])
    n_grouped = sum(len(g["params"]) for g in optimizer.param_groups)
    assert n_grouped == len(list(model.parameters()))


def test_unsupervised_loss_is_the_class_averaged_mse_of_softmaxes():
    torch.manual_seed(0)
    main = torch.randn(2, 21, 16, 16)
    assert unsupervised_loss([main.clone().requires_grad_(), main.clone()], main) == 0
    aux = torch.randn(2, 21, 16, 16)
    per_pixel = ((aux.softmax(1) - main.softmax(1)) ** 2).sum(1)  # squared L2 over classes
    torch.testing.assert_close(softmax_mse(aux, main.softmax(1)), per_pixel.mean() / 21)
    torch.testing.assert_close(softmax_mse(aux, main.softmax(1), "sum_classes"), per_pixel.mean())
    torch.testing.assert_close(unsupervised_loss([aux, main], main), per_pixel.mean() / 21 / 2)


def test_weak_loss_averages_the_cross_entropy_of_the_aux_decoders_ignoring_255():
    torch.manual_seed(0)
    aux = [torch.randn(2, 21, 16, 16) for _ in range(3)]
    labels = torch.randint(0, 21, (2, 16, 16))
    labels[:, :4] = 255
    valid = labels != 255
    manual = []
    for out in aux:
        logp = out.log_softmax(1).gather(1, labels.clamp(max=20)[:, None])[:, 0]
        manual.append(-logp[valid].mean())
    torch.testing.assert_close(weak_loss(aux, labels), torch.stack(manual).mean())
    assert weak_loss(aux, torch.full_like(labels, 255)) == 0


@pytest.fixture(scope="module")
def toy_batch():
    torch.manual_seed(0)
    x_l, x_u = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    y_l, y_w = torch.randint(0, 21, (2, 32, 32)), torch.randint(0, 21, (2, 32, 32))
    y_w[:, :8] = 255
    return x_l, y_l, x_u, y_w


def grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> float:
    got = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return sum(0.0 if g is None else g.abs().sum().item() for g in got)


def test_total_loss_composition_and_gradient_routing(toy_batch):
    torch.manual_seed(0)
    model = tiny_cct(rampup_steps=100)
    losses = model.compute_losses(*toy_batch, step=20)
    w_u, w_w = loss_weights(20, 100)
    assert losses["w_u"].item() == pytest.approx(w_u) and losses["w_w"].item() == pytest.approx(w_w)
    total = losses["loss_sup"] + w_u * losses["loss_unsup"] + w_w * losses["loss_weak"]
    torch.testing.assert_close(losses["loss"], total)
    net = model.net
    main, aux, encoder = (list(m.parameters()) for m in (net.main_decoder, net.aux_decoders, net.encoder))
    routes = {name: [grads(losses[name], p) for p in (main, aux, encoder)]
              for name in ("loss_sup", "loss_unsup", "loss_weak")}  # fmt: skip
    assert routes["loss_sup"][0] > 0 and routes["loss_sup"][1] == 0 and routes["loss_sup"][2] > 0
    assert routes["loss_unsup"][0] == 0 and routes["loss_unsup"][1] > 0 and routes["loss_unsup"][2] > 0
    assert routes["loss_weak"][0] == 0 and routes["loss_weak"][1] > 0 and routes["loss_weak"][2] > 0
    assert all(p.grad is None for p in model.parameters())  # VAT's probe left nothing behind


def test_weak_label_modes_and_the_main_decoder_switch(toy_batch):
    torch.manual_seed(0)
    none = tiny_cct(rampup_steps=0, weak_labels="none").compute_losses(*toy_batch[:3], None, step=0)
    assert "loss_weak" not in none
    torch.testing.assert_close(none["loss"], none["loss_sup"] + 30 * none["loss_unsup"])
    model = tiny_cct(rampup_steps=0, weak_loss_on_main=True)
    losses = model.compute_losses(*toy_batch, step=0)
    assert grads(losses["loss_weak_main"], list(model.net.main_decoder.parameters())) > 0
    torch.testing.assert_close(
        losses["loss"], losses["loss_sup"] + 30 * losses["loss_unsup"] + 0.4 * (losses["loss_weak"] + losses["loss_weak_main"])
    )
    with pytest.raises(ValueError, match="weak_labels must be one of"):
        tiny_cct(weak_labels="pseudo")


def test_labelled_and_unlabelled_batches_take_separate_encoder_passes(toy_batch):
    model = tiny_cct(rampup_steps=0)
    bn = model.net.encoder.backbone.bn1
    model.compute_losses(*toy_batch, step=0)
    assert bn.num_batches_tracked.item() == 2


def test_multi_scale_inference_averages_raw_outputs_over_scales_and_flips():
    calls = []

    def width_net(x):  # a constant map whose value is the input width: raw averaging is visible
        calls.append(tuple(x.shape[-2:]))
        return torch.full((x.shape[0], 21, 8 * math.ceil(x.shape[-2] / 8), 8 * math.ceil(x.shape[-1] / 8)),
                          float(x.shape[-1]))  # fmt: skip

    image = torch.randn(1, 3, 37, 50)  # padded to 40 × 56
    out = multi_scale_predict(width_net, image)
    scales = (0.5, 0.75, 1.0, 1.25, 1.5)
    assert calls == [(math.floor(40 * s), math.floor(56 * s)) for s in scales for _ in range(2)]
    assert out.shape == (1, 21, 37, 50)
    torch.testing.assert_close(out, torch.full_like(out, sum(math.floor(56 * s) for s in scales) / 5))
    soft = multi_scale_predict(width_net, image, average="softmax")
    torch.testing.assert_close(soft, torch.full_like(soft, 1 / 21))


def test_multi_scale_inference_mirrors_flipped_outputs_back():
    image = torch.randn(1, 3, 16, 24)
    x_ramp = torch.arange(24.0).expand(1, 1, 16, 24)

    def position_net(x):  # left-right asymmetric: a wrong un-flip would show
        return x[:, :1] * 0 + F.interpolate(x_ramp, size=x.shape[-2:], mode="bilinear", align_corners=True)

    out = multi_scale_predict(position_net, image, scales=(1.0,), flip=True)
    torch.testing.assert_close(out[0, 0], (x_ramp[0, 0] + x_ramp[0, 0].flip(-1)) / 2)
    torch.testing.assert_close(multi_scale_predict(position_net, image, scales=(1.0,), flip=False)[0, 0], x_ramp[0, 0])


def compose_semi(overrides=()):
    return compose_config(["data.root=/voc", "paths.work_dir=/w", *overrides])


def test_semi_config_picks_the_weak_label_folder_of_its_mode():
    cfg = compose_semi()
    assert cfg.semi.module._target_ == "advcam_pl.models.cct.CCT"
    assert dict(cfg.semi.module.aux_counts) == {"vat": 2, "dropout": 6, "cutout": 6, "context_mask": 2,
                                                "object_mask": 2, "feature_drop": 6, "feature_noise": 6}
    assert cfg.semi.data.weak_label_dir == cfg.artifacts.sem_seg_dir
    assert compose_semi(["semi.weak_labels=ir_label"]).semi.data.weak_label_dir == cfg.artifacts.ir_label_dir
    none = compose_semi(["semi=cct_tiny", "semi.weak_labels=none"])
    assert none.semi.data.weak_label_dir is None and none.semi.module.weak_labels == "none"


def test_tiny_config_instantiates_the_same_code_with_every_decoder_type():
    cfg = compose_semi(["semi=cct_tiny"])
    model = instantiate(cfg.semi.module)
    assert isinstance(model, CCT) and model.hparams.depth == 18
    kinds = [type(d).__name__ for d in model.net.aux_decoders]
    assert len(kinds) == len(set(kinds)) == 7
