"""IRN: shapes, frozen backbone, IRN's loss weighting and optimiser, the loss going down."""

import pytest
import torch

from advcam_pl.data.affinity import affinity_labels
from advcam_pl.models.irn import IRN, irn_loss
from advcam_pl.refine.indexing import PathIndex


@pytest.fixture(scope="module")
def irn():
    torch.manual_seed(0)
    return IRN(depth=18, pretrained=None, radius=5, dp_width=64, max_steps=30)


@pytest.mark.parametrize("size", [(64, 64), (50, 70)])
def test_outputs_are_at_stride_four(irn, size):
    edge, disp = irn(torch.randn(1, 3, *size))
    h4, w4 = (size[0] + 3) // 4, (size[1] + 3) // 4
    assert edge.shape == (1, 1, h4, w4) and disp.shape == (1, 2, h4, w4)
    assert irn.edge_map(torch.randn(3, *size), pad_to=80).shape == (h4, w4)


def test_resnet50_branches_have_irn_widths():
    model = IRN(depth=50, pretrained=None)
    assert model.fc_edge2[0].in_channels == 256 and model.fc_edge5[0].in_channels == 2048
    assert model.fc_edge6.in_channels == 160
    assert model.fc_dp6[0].in_channels == 768 and model.fc_dp7[0].in_channels == 448
    assert [m.num_groups for m in (model.fc_edge1[1], model.fc_dp1[1], model.fc_dp3[1])] == [4, 8, 16]


def test_backbone_is_frozen_and_only_the_branches_learn(irn):
    irn.zero_grad()
    label = torch.zeros(1, 16, 16, dtype=torch.long)
    label[:, 4:12, 4:12] = 3
    irn.losses(torch.randn(1, 3, 64, 64), label)["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in irn.backbone.parameters())
    edge, dp = irn.trainable_parameters()
    assert all(p.grad is not None for p in edge + dp)
    assert len(edge) + len(dp) == sum(1 for p in irn.parameters() if p.requires_grad)


def test_affinity_labels_match_the_pair_rules():
    pi = PathIndex(3, (6, 8))
    label = torch.randint(0, 3, (2, 6, 8))
    label[0, 2, 3] = 255
    bg, fg, neg = affinity_labels(label, torch.from_numpy(pi.src_indices), torch.from_numpy(pi.dst_indices))
    flat = label.reshape(2, -1)
    for b in range(2):
        for d in range(pi.num_directions):
            for n, s in enumerate(pi.src_indices):
                a, c = int(flat[b, s]), int(flat[b, pi.dst_indices[d, n]])
                valid = a < 21 and c < 21
                assert bg[b, d, n] == (valid and a == c == 0)
                assert fg[b, d, n] == (valid and a == c and a > 0)
                assert neg[b, d, n] == (valid and a != c)


def test_irn_loss_weights_each_term_by_its_own_pair_count():
    aff = torch.tensor([[[0.5, 0.9, 0.2, 0.7]]])  # [B=1, D=1, N=4]
    bg = torch.tensor([[[1.0, 0, 0, 0]]])
    fg = torch.tensor([[[0, 1.0, 1.0, 0]]])
    neg = torch.tensor([[[0, 0, 0, 1.0]]])
    pair = torch.zeros(1, 2, 1, 4)
    pair[0, :, 0, 1] = torch.tensor([1.0, 2.0])  # a fg pair displaced exactly by the target
    target = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    out = irn_loss(aff, pair, target, bg, fg, neg)
    eps = 1e-5
    pos = -torch.log(torch.tensor(0.5 + eps)) / 2 / (1 + eps) + (
        -torch.log(torch.tensor(0.9 + eps)) - torch.log(torch.tensor(0.2 + eps))) / 2 / (2 + eps)
    negl = -torch.log(torch.tensor(1 + eps - 0.7)) / (1 + eps)
    dp_fg = (0 + 0 + 1 + 2) / (2 * 2 + eps)  # second fg pair: |0 - (1, 2)|
    assert torch.isclose(out["pos_aff"], pos, atol=1e-6)
    assert torch.isclose(out["neg_aff"], negl, atol=1e-6)
    assert torch.isclose(out["dp_fg"], torch.tensor(dp_fg), atol=1e-6)
    assert out["dp_bg"] == 0
    assert torch.isclose(out["loss"], (pos + negl) / 2 + (dp_fg + 0) / 2, atol=1e-6)


def test_optimizer_is_irn_poly_sgd(irn):
    config = irn.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.1), pytest.approx(1.0)]
    assert all(g["weight_decay"] == 1e-4 and g["momentum"] == 1e-4 for g in opt.param_groups)
    for _ in range(15):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 15 / 30) ** 0.9)


def test_loss_decreases_on_a_tiny_set():
    torch.manual_seed(0)
    model = IRN(depth=18, pretrained=None, radius=4, dp_width=64, max_steps=30)
    images = torch.randn(2, 3, 48, 48) * 0.2
    labels = torch.zeros(2, 12, 12, dtype=torch.long)
    images[0, :, 12:36, 8:32] += 1.5  # a bright object with label 5, an ignore ring around it
    labels[0, 2:10, 1:9] = 255
    labels[0, 3:9, 2:8] = 5
    images[1, :, :, 24:] -= 1.5
    labels[1, :, 6:] = 12
    opt = model.configure_optimizers()["optimizer"]
    taps = model.taps(images)  # the backbone is frozen: its features do not change
    losses = []
    for _ in range(15):
        loss = model.losses(None, labels, taps=taps)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3


def test_mean_shift_is_subtracted_only_in_eval(irn):
    x = torch.randn(1, 3, 32, 32)
    irn.eval()
    raw = irn.displacement_raw(irn.taps(x))
    irn.mean_shift.running_mean.copy_(torch.tensor([0.5, -1.0]))
    _, shifted = irn(x)
    assert torch.allclose(shifted, raw - torch.tensor([0.5, -1.0]).view(1, 2, 1, 1), atol=1e-6)
    irn.train()
    _, unshifted = irn(x)
    assert torch.allclose(unshifted, raw, atol=1e-6)
    total, count = irn.displacement_sum([x, x])
    assert count == 2 and torch.allclose(total, 2 * raw.mean(dim=(0, 2, 3)), atol=1e-5)
    irn.mean_shift.running_mean.zero_()


def test_backbone_initialises_from_a_cam_checkpoint(tmp_path, irn):
    source = IRN(depth=18, pretrained=None)
    state = {f"backbone.{k}": v for k, v in source.backbone.state_dict().items()}
    state["classifier.weight"] = torch.zeros(20, 512, 1, 1)
    torch.save({"state_dict": state}, tmp_path / "cam.ckpt")
    model = IRN(depth=18, pretrained=None)
    n = model.init_backbone(str(tmp_path / "cam.ckpt"))
    assert n == len(source.backbone.state_dict())
    assert torch.equal(model.backbone.conv1.weight, source.backbone.conv1.weight)
    assert model.init_backbone(None) == 0
