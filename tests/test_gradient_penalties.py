"""Gradient penalties against brute force: explicit per-sample, per-class gradients in loops, float64."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robench.losses import LOSSES, build_loss
from robench.losses.input_gradients import forward_with_vjp
from robench.models import build_model
from robench.training.gradient_stats import gradient_statistics

B, D = 5, 3


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, D)).double()


def conv_bn_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(48, D)).double()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(B, 1, 3, 4, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 1, 0])


def brute_force_rows(model, x, create_graph=False):
    """rows[b][d] = ∂z_d(x_b)/∂x_b, one autograd call per image and class."""
    rows = []
    for b in range(len(x)):
        xb = x[b:b + 1].clone().requires_grad_()
        zb = model(xb)[0]
        rows.append([torch.autograd.grad(zb[d], xb, retain_graph=True, create_graph=create_graph)[0][0]
                     for d in range(D)])
    return rows


def brute_force_penalty(name, model, x, y, create_graph=False):
    rows = brute_force_rows(model, x, create_graph)
    per_image = []
    for b, grads in enumerate(rows):
        if name == "jacobian":
            per_image.append(torch.sqrt(sum((g ** 2).sum() for g in grads)))
        elif name == "cross-lipschitz":
            pairs = sum(((grads[l] - grads[m]) ** 2).sum() for l in range(D) for m in range(D))
            per_image.append(pairs / D**2)
        else:  # input-grad
            xb = x[b:b + 1].clone().requires_grad_()
            loss_b = F.cross_entropy(model(xb), y[b:b + 1])
            (g,) = torch.autograd.grad(loss_b, xb, create_graph=create_graph)
            per_image.append((g ** 2).sum())
    return torch.stack(per_image).mean()


PENALISED = ["jacobian", "input-grad", "cross-lipschitz"]


@pytest.mark.parametrize("name", PENALISED)
def test_penalty_matches_brute_force(name, batch):
    x, y = batch
    model = tiny_model()
    loss = build_loss(name, D)
    z, vjps = forward_with_vjp(model, x)
    got = loss.penalty(z, y, vjps)
    want = brute_force_penalty(name, model, x, y)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.parametrize("name", PENALISED)
def test_objective_and_its_parameter_gradient_match_brute_force(name, batch):
    """Double back-propagation: d(CE + λ·penalty)/dθ equals the looped computation's."""
    x, y = batch
    model = tiny_model()
    loss = build_loss(name, D, {"reg_weight": 0.7})
    value, z = loss.objective(model, x, y)
    got = torch.autograd.grad(value, list(model.parameters()))
    want_value = F.cross_entropy(model(x), y) + 0.7 * brute_force_penalty(name, model, x, y, create_graph=True)
    want = torch.autograd.grad(want_value, list(model.parameters()))
    assert value.item() == pytest.approx(want_value.item(), rel=1e-6)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", PENALISED)
def test_penalty_through_conv_and_batchnorm_in_eval_mode(name, batch):
    x, y = batch
    model = conv_bn_model()
    model[1].running_mean.uniform_(-0.2, 0.2)
    model[1].running_var.uniform_(0.5, 2.0)
    model.eval()
    z, vjps = forward_with_vjp(model, x)
    assert build_loss(name, D).penalty(z, y, vjps).item() == pytest.approx(
        brute_force_penalty(name, model, x, y).item(), rel=1e-6)


def test_training_mode_batchnorm_uses_batch_statistics_as_constants(batch):
    """z equals the ordinary training forward, running statistics move the same way, and the
    Jacobian is that of the network normalising with this batch's (constant) statistics."""
    x, y = batch
    model = conv_bn_model().train()
    reference = copy.deepcopy(model)
    z, vjps = forward_with_vjp(model, x)
    torch.testing.assert_close(z, reference(x))
    torch.testing.assert_close(model[1].running_mean, reference[1].running_mean)
    torch.testing.assert_close(model[1].running_var, reference[1].running_var)
    assert model[1].num_batches_tracked.item() == reference[1].num_batches_tracked.item() == 1
    # constant-statistics network: BN replaced by the affine map with this batch's statistics
    h = reference[0](x)
    mean, var = h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=False)
    bn = reference[1]
    scale = bn.weight / torch.sqrt(var + bn.eps)
    affine = nn.Conv2d(4, 4, 1, groups=4).double()
    with torch.no_grad():
        affine.weight.copy_(scale.view(4, 1, 1, 1))
        affine.bias.copy_(bn.bias - mean * scale)
    frozen = nn.Sequential(reference[0], affine, *list(reference)[2:]).eval()
    jac = vjps(torch.eye(D, dtype=torch.float64)[:, None, :].expand(D, B, D))
    rows = brute_force_rows(frozen, x)
    for b in range(B):
        for d in range(D):
            torch.testing.assert_close(jac[d, b], rows[b][d])


def test_projection_estimator_is_unbiased_for_the_squared_norm(batch):
    x, y = batch
    model = tiny_model()
    exact = brute_force_rows(model, x)
    sq = torch.stack([sum((g ** 2).sum() for g in rows) for rows in exact])
    torch.manual_seed(0)
    loss = build_loss("jacobian", D, {"projections": 4000})
    z, vjps = forward_with_vjp(model, x)
    estimate = loss.penalty(z, y, vjps)  # mean_b sqrt(estimated ||J_b||^2)
    assert estimate.item() == pytest.approx(sq.sqrt().mean().item(), rel=0.03)


def test_gradient_statistics_match_brute_force(batch):
    x, y = batch
    model = tiny_model()
    stats = gradient_statistics(model, x, y, batch_size=2)
    rows = brute_force_rows(model, x)
    jac = torch.stack([torch.sqrt(sum((g ** 2).sum() for g in r)) for r in rows]).mean()
    grad_ce = brute_force_penalty("input-grad", model, x, y)  # mean of squares; we want mean of norms
    norms = []
    for b in range(B):
        xb = x[b:b + 1].clone().requires_grad_()
        (g,) = torch.autograd.grad(F.cross_entropy(model(xb), y[b:b + 1]), xb)
        norms.append(g.norm())
    assert stats["jacobian_frobenius"] == pytest.approx(jac.item(), rel=1e-6)
    assert stats["ce_input_gradient"] == pytest.approx(torch.stack(norms).mean().item(), rel=1e-6)
    assert stats["cross_lipschitz"] == pytest.approx(brute_force_penalty("cross-lipschitz", model, x, y).item(),
                                                     rel=1e-6)
    assert grad_ce.item() > 0 and stats["n_images"] == B


@pytest.mark.parametrize("model_name", ["small-cnn", "resnet18", "shake-shake-26-2x96d"])
@pytest.mark.parametrize("name", PENALISED)
def test_penalised_objective_runs_on_every_architecture(model_name, name):
    options = {"width": 0.05} if model_name != "small-cnn" else {}
    model = build_model(model_name, in_channels=1, image_size=(8, 8), num_classes=4, mean=(0.5,), std=(0.3,),
                        options=options).train()
    x, y = torch.rand(8, 1, 8, 8), torch.arange(4).repeat(2)
    value, z = build_loss(name, 4, {"projections": 1} if name == "jacobian" else {}).objective(model, x, y)
    value.backward()
    assert torch.isfinite(value) and z.shape == (8, 4)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_registry_lists_the_paper_losses_and_adversarial_training():
    assert LOSSES.names() == [
        "ce", "cross-lipschitz", "gccs", "input-grad", "jacobian", "pgd-at", "trades",
    ]


def test_bad_penalty_settings_are_clear_errors():
    from robench.errors import RobenchError

    with pytest.raises(RobenchError, match="reg_weight"):
        build_loss("input-grad", 3, {"reg_weight": -1})
    with pytest.raises(RobenchError, match="projections"):
        build_loss("jacobian", 3, {"projections": -2})
