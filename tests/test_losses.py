"""GCCS against an independent numpy implementation of eqs. (1)-(2), plus CE and registry checks."""

import numpy as np
import pytest
import torch

from robench.errors import RobenchError
from robench.losses import LOSSES, GCCSLoss, build_loss, prediction


def gccs_numpy(z, y, d, mu=70.0, sigma=1.0, lam=0.2, jitter=0.0, eps=0.0, diag=False):
    """Eqs. (1)-(2) with explicit per-class loops (the spec, written independently)."""
    total = 0.0
    for i in range(d):
        zi = z[y == i]
        n = len(zi)
        if n < 2:
            continue
        m = zi.mean(axis=0)
        s = np.cov(zi, rowvar=False, ddof=1).reshape(d, d)
        if diag:
            s = np.diag(np.diag(s))
        sign, logdet = np.linalg.slogdet(s + jitter * np.eye(d))
        assert sign > 0
        target = np.zeros(d)
        target[i] = mu
        kl = (d * np.log(sigma**2) - logdet - d + np.trace(s) / sigma**2
              + np.sum((target - m) ** 2) / sigma**2)
        sd = np.sqrt(zi.var(axis=0, ddof=0) + eps)
        k = np.mean(np.mean(((zi - m) / sd) ** 4, axis=0))
        total += kl + lam * (k - 3)
    return total


def random_batch(rng, d, per_class, scale=3.0, spread=1.5):
    y = np.repeat(np.arange(d), per_class)
    z = rng.normal(size=(len(y), d)) * spread + scale * np.eye(d)[y] * rng.uniform(0.5, 2)
    return z, y


@pytest.mark.parametrize("d,per_class", [(3, 6), (10, 15), (5, 40)])
@pytest.mark.parametrize("diag", [False, True])
def test_gccs_matches_numpy_float64(d, per_class, diag):
    rng = np.random.default_rng(d * 100 + per_class)
    z, y = random_batch(rng, d, per_class)
    mu, sigma, lam = 4.0, 1.3, 0.35
    cov = "diag" if diag else "full"
    loss = GCCSLoss(d, mu=mu, sigma=sigma, kurtosis_weight=lam, covariance=cov, jitter=0.0, variance_eps=0.0)
    got = loss(torch.tensor(z), torch.tensor(y)).item()
    want = gccs_numpy(z, y, d, mu, sigma, lam, diag=diag)
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("d,per_class", [(10, 4), (30, 3), (3, 6)])
def test_gccs_default_jitter_matches_numpy_with_same_jitter(d, per_class):
    """Fewer rows than D (singular S_i, the m x m determinant-lemma path) and more rows than D."""
    rng = np.random.default_rng(0)
    z, y = random_batch(rng, d, per_class)
    got = GCCSLoss(d)(torch.tensor(z), torch.tensor(y)).item()
    want = gccs_numpy(z, y, d, jitter=1e-3, eps=1e-12)
    assert np.isfinite(got)
    assert got == pytest.approx(want, rel=1e-5)


def test_gccs_skips_classes_with_fewer_than_two_rows():
    rng = np.random.default_rng(1)
    z, y = random_batch(rng, 4, 8)
    keep = np.concatenate([np.where(y != 3)[0], np.where(y == 3)[0][:1]])  # class 3: one row
    got = GCCSLoss(4, jitter=0, variance_eps=0)(torch.tensor(z[keep]), torch.tensor(y[keep])).item()
    assert got == pytest.approx(gccs_numpy(z[keep], y[keep], 4), rel=1e-5)


def test_gccs_zero_when_no_class_has_two_rows_and_still_backpropagates():
    z = torch.randn(3, 5, requires_grad=True)
    loss = GCCSLoss(5)(z, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_gccs_kl_part_near_zero_on_target_samples():
    """At the target distributions the KL part is ~0 and kurtosis ~3 (large samples)."""
    d, n, mu = 5, 20000, 70.0
    g = torch.Generator().manual_seed(0)
    y = torch.arange(d).repeat_interleave(n)
    z = mu * torch.eye(d, dtype=torch.float64)[y] + torch.randn(d * n, d, generator=g, dtype=torch.float64)
    kl_only = GCCSLoss(d, kurtosis_weight=0.0, jitter=0.0)(z, y).item()
    assert abs(kl_only) < 0.02 * d
    with_kurtosis = GCCSLoss(d, jitter=0.0)(z, y).item()
    assert abs(with_kurtosis - kl_only) < 0.02 * d
    # far from the target the loss is large
    assert GCCSLoss(d, kurtosis_weight=0.0)(z * 0.5, y).item() > 100


@pytest.mark.parametrize("d,batch,cov", [(10, 32, "full"), (100, 128, "full"), (100, 128, "diag")])
def test_gccs_finite_on_realistic_float32_batches(d, batch, cov):
    g = torch.Generator().manual_seed(d)
    loss_fn = GCCSLoss(d, covariance=cov)
    for trial in range(5):
        z = (torch.randn(batch, d, generator=g) * 10 ** (trial - 2)).requires_grad_()
        y = torch.randint(0, d, (batch,), generator=g)
        loss = loss_fn(z, y)
        loss.backward()
        assert torch.isfinite(loss), (trial, loss)
        assert torch.isfinite(z.grad).all()
    # identical rows within a class: zero covariance and zero spread
    z = torch.zeros(batch, d, requires_grad=True)
    loss = loss_fn(z, torch.randint(0, d, (batch,), generator=g))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_gccs_gradcheck_float64():
    rng = np.random.default_rng(3)
    z, y = random_batch(rng, 3, 5)
    z = torch.tensor(z, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: GCCSLoss(3, mu=3.0)(t, torch.tensor(y)), (z,))


def test_prediction_is_nearest_simplex_vertex():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200, 7, generator=g) * 30
    vertices = 70.0 * torch.eye(7)
    nearest = torch.cdist(z, vertices).argmin(dim=1)
    assert torch.equal(prediction(z), nearest)


def test_ce_is_cross_entropy_on_logits():
    z = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 2])
    logp = z - torch.logsumexp(z, dim=1, keepdim=True)
    assert build_loss("ce", 3)(z, y).item() == pytest.approx(-(logp[0, 0] + logp[1, 2]).item() / 2)


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_is_finite_scalar_with_gradient(name):
    z = torch.randn(40, 4, requires_grad=True)
    y = torch.arange(4).repeat(10)
    loss = build_loss(name, 4)(z, y)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_unknown_loss_and_hyper_parameter_are_clear_errors():
    with pytest.raises(RobenchError, match="did you mean 'gccs'"):
        build_loss("gcss", 10)
    with pytest.raises(RobenchError, match="no hyper-parameter 'muu'"):
        build_loss("gccs", 10, {"muu": 3})
