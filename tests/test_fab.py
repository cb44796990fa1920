"""FAB-T: the box-constrained projection against hand-solved and brute-force answers, the closed-form
minimal distance of a linear model, the contract, and robust accuracy no worse than torchattacks' FAB."""

import copy
import time

import numpy as np
import pytest
import torch
from test_attacks import D, easy  # noqa: F401  (the tiny trained model, a fixture)
from torch import nn

from robench.attacks import build_attack
from robench.attacks.fab import FAB, box_projection
from robench.errors import RobenchError
from robench.norms import distance

NORMS = ["Linf", "L2"]

# (point, w, b, δ for L∞, δ for L2), each solved by hand.
HAND = [
    # r = 0.5 along (1, 1); the free steps (0.25, 0.25) leave the box at z1 = 1.15, so z1 stops at 1:
    # L∞: min(λ, 0.1) + min(λ, 0.8) = 0.5 gives λ = 0.4; L2: min δ1² + δ2² with δ1 + δ2 = 0.5, δ1 ≤ 0.1.
    ((0.9, 0.2), (1.0, 1.0), 1.6, (0.1, 0.4), (0.1, 0.4)),
    # no box contact: r = -0.3; L∞ moves every used coordinate by |r|/‖w‖₁ = 0.1, L2 by r·w/‖w‖₂².
    ((0.5, 0.5), (1.0, -2.0), -0.8, (-0.1, 0.1), (-0.06, 0.12)),
    # z1 = 1 already and w pushes it out: only z2 moves, 0.5·δ2 = 0.05.
    ((1.0, 0.3), (1.0, 0.5), 1.2, (0.0, 0.1), (0.0, 0.1)),
    # on the hyperplane already: no step.
    ((0.2, 0.7), (2.0, 1.0), 1.1, (0.0, 0.0), (0.0, 0.0)),
    # the hyperplane misses the box (w·z ≤ 1 < 2.5 there): the box corner closest to it.
    ((0.5, 0.5), (1.0, -1.0), 2.5, (0.5, -0.5), (0.5, -0.5)),
    # a coordinate with w = 0 never moves.
    ((0.5, 0.5), (0.0, 4.0), 3.0, (0.0, 0.25), (0.0, 0.25)),
]


@pytest.mark.parametrize("norm", NORMS)
def test_box_projection_matches_hand_solved_cases(norm):
    point, w, b, want_linf, want_l2 = (torch.tensor(v, dtype=torch.float64) for v in zip(*HAND))
    got = box_projection(point, w, b, norm)   # all rows at once: rows do not interact
    assert torch.allclose(got, want_linf if norm == "Linf" else want_l2, atol=1e-12)


def brute_force_3d(point, w, b, norm, n=1001):
    """Least ‖z − point‖ over z ∈ [0, 1]³ with w·z = b, sampling (z1, z2) on a grid and solving for z3."""
    z1, z2 = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    z3 = (b - w[0] * z1 - w[1] * z2) / w[2]
    inside = (z3 >= 0) & (z3 <= 1)
    d = np.stack((z1 - point[0], z2 - point[1], z3 - point[2]))[:, inside]
    return (np.abs(d).max(0) if norm == "Linf" else np.sqrt((d ** 2).sum(0))).min()


@pytest.mark.parametrize("norm", NORMS)
def test_box_projection_is_the_least_step_by_brute_force(norm):
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 8:
        point, w = rng.random(3), rng.normal(size=3)
        w[2] = np.sign(w[2]) * (np.abs(w).max() + 0.5)   # the largest |w_i| last: z3 is well conditioned
        b = w @ rng.random(3)                            # a hyperplane through a point of the box
        delta = box_projection(torch.tensor(point)[None], torch.tensor(w)[None],
                               torch.tensor([b], dtype=torch.float64), norm)[0].numpy()
        z = point + delta
        assert abs(w @ z - b) < 1e-9 and (z >= -1e-12).all() and (z <= 1 + 1e-12).all()
        size = np.abs(delta).max() if norm == "Linf" else np.linalg.norm(delta)
        best = brute_force_3d(point, w, b, norm)
        assert size <= best + 1e-9                        # never worse than any sampled point
        assert size >= best - 2e-3 * (1 + np.abs(w[:2] / w[2]).sum())   # and as good, up to the grid
        checked += 1


def test_box_projection_is_optimal_in_higher_dimensions():
    """L∞: the value of the LP min t s.t. |δ_i| ≤ t, w·δ = r, box (scipy); L2: the KKT conditions."""
    linprog = pytest.importorskip("scipy.optimize").linprog
    rng = np.random.default_rng(1)
    for _ in range(20):
        d = int(rng.integers(4, 9))
        point, w = rng.random(d), rng.normal(size=d)
        w[rng.integers(d)] = 0.0
        b = w @ rng.random(d)
        r, lo, hi = b - w @ point, -point, 1 - point
        args = (torch.tensor(point)[None], torch.tensor(w)[None], torch.tensor([b], dtype=torch.float64))
        linf, l2 = (box_projection(*args, norm)[0].numpy() for norm in NORMS)
        for delta in (linf, l2):
            assert abs(w @ delta - r) < 1e-9 and (delta >= lo - 1e-12).all() and (delta <= hi + 1e-12).all()
        eye, ones = np.eye(d), np.ones((d, 1))
        lp = linprog(np.r_[np.zeros(d), 1.0], A_ub=np.block([[eye, -ones], [-eye, -ones]]), b_ub=np.zeros(2 * d),
                     A_eq=np.r_[w, 0.0][None], b_eq=[r], bounds=list(zip(lo, hi)) + [(0, None)])
        assert np.abs(linf).max() == pytest.approx(lp.fun, abs=1e-8)
        mu = np.median([l2[i] / w[i] for i in range(d) if w[i] and lo[i] + 1e-9 < l2[i] < hi[i] - 1e-9])
        assert np.allclose(l2, np.clip(mu * w, lo, hi), atol=1e-9)   # δ = P_box(μ w), one μ for all


def linear_binary(seed=0, n=32):
    """Images in [0.3, 0.7] and a 2-class linear model with f_1 − f_0 = w·x + c; y its own predictions."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 + 0.4 * torch.rand(n, 3, 4, 4, generator=g)
    w = torch.randn(48, generator=g)
    c = -(x.flatten(1) @ w).median()
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack((torch.zeros(48), w)))
        model[1].bias.copy_(torch.stack((torch.tensor(0.0), c)))
    margin = x.flatten(1) @ w + c
    keep = margin.abs() > 1e-3
    return model.eval(), x[keep], (margin[keep] > 0).long(), margin[keep], w


@pytest.mark.parametrize("norm", NORMS)
def test_fab_finds_the_closed_form_distance_of_a_linear_model(norm):
    model, x, y, margin, w = linear_binary()
    exact = margin.abs() / (w.abs().sum() if norm == "Linf" else w.norm())   # |w·x + c| / ‖w‖_dual
    step = exact[:, None] * (torch.ones_like(w) if norm == "Linf" else w.abs() / w.norm())
    assert (step.amax(1) < 0.3).all()   # the free minimiser stays in the box, so the formula is the answer
    found = FAB(norm=norm)(model, x, y, torch.full((len(x),), 10.0))
    with torch.no_grad():
        assert (model(found).argmax(1) != y).all()
    ratio = distance(found, x, norm) / exact
    assert (ratio >= 1 - 1e-4).all() and (ratio <= 1.02).all(), ratio
    assert torch.equal(FAB(norm=norm)(model, x, y, 0.98 * exact), x)   # not within ε: x itself
    with torch.no_grad():   # FAB takes its input gradients under a caller's no_grad too
        assert (model(FAB(norm=norm)(model, x, y, 1.03 * exact)).argmax(1) != y).all()


@pytest.mark.parametrize("norm,eps_value", [("Linf", 0.13), ("L2", 0.65)])
def test_fab_is_at_least_as_strong_as_torchattacks(easy, norm, eps_value):  # noqa: F811
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = easy
    eps = torch.full((len(x),), eps_value)
    torch.manual_seed(0)
    start = time.perf_counter()
    x_adv = FAB(norm=norm)(model, x, y, eps)
    native_s = time.perf_counter() - start
    peer = torchattacks.FAB(model, norm=norm, eps=eps_value, steps=100, n_restarts=1, multi_targeted=True,
                            n_classes=D, seed=0)
    start = time.perf_counter()
    x_peer = peer(x, y)
    peer_s = time.perf_counter() - start
    with torch.no_grad():
        native, oracle = ((model(a).argmax(1) == y).float().mean().item() for a in (x_adv, x_peer))
    print(f"fab {norm} eps={eps_value}: robust accuracy native {native:.4f} ({native_s:.2f} s), "
          f"torchattacks {oracle:.4f} ({peer_s:.2f} s)")
    assert (distance(x_adv, x, norm) <= eps + 1e-6).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    assert 0.2 <= native <= 0.8   # a moderate ε: some images broken, some not
    assert native <= oracle + 0.01


@pytest.mark.parametrize("norm", NORMS)
def test_contract_ball_box_zero_eps_and_untouched_images(easy, norm):  # noqa: F811
    model, x, y = easy
    eps = torch.tensor([0.0, 0.13 if norm == "Linf" else 0.65, 1.0]).repeat_interleave(16)
    x_adv = FAB(norm=norm, steps=30)(model, x, y, eps)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (distance(x_adv, x, norm) <= eps + 1e-6).all()
    with torch.no_grad():
        robust = model(x_adv).argmax(1) == y
    assert torch.equal(x_adv[:16], x[:16])                # ε = 0
    assert torch.equal(x_adv[robust], x[robust])          # not broken within ε: x itself
    assert not robust[32:].any()                          # a large ε breaks everything
    all_zero = FAB(norm=norm)(model, x, y, torch.zeros(len(x)))
    assert torch.equal(all_zero, x) and all_zero is not x


def test_gradients_only_for_the_input_and_no_sync_in_the_loop(easy):  # noqa: F811
    model, x, y = easy
    model = copy.deepcopy(model)
    for p in model.parameters():
        p.grad = None   # the fixture's training left some
    FAB(steps=5)(model, x, y, torch.full((len(x),), 0.2))
    assert all(p.grad is None for p in model.parameters())
    meta = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).to("meta")
    xm, ym = torch.rand(5, 3, 2, 2, device="meta"), torch.zeros(5, dtype=torch.long, device="meta")
    for norm in NORMS:   # .item(), bool(tensor) and mask indexing all raise on the meta device
        best, dist = FAB(steps=3, norm=norm).run_towards(meta, xm, ym, ym + 1, xm)
        assert best.shape == xm.shape and dist.shape == (5,)


def test_restarts_are_seeded_and_never_weaker(easy):  # noqa: F811
    model, x, y = easy
    eps = torch.full((len(x),), 0.12)
    runs = []
    for restarts in (1, 3, 3):
        torch.manual_seed(1)
        runs.append(FAB(steps=20, restarts=restarts)(model, x, y, eps))
    assert torch.equal(runs[1], runs[2])   # randomness from torch's global generator
    with torch.no_grad():
        assert (model(runs[1]).argmax(1) == y).sum() <= (model(runs[0]).argmax(1) == y).sum()


def test_two_classes_cap_the_targets():
    model, x, y, _, _ = linear_binary(n=8)
    x_adv = FAB(targets=9, steps=10)(model, x, y, torch.full((len(x),), 1.0))
    with torch.no_grad():
        assert (model(x_adv).argmax(1) != y).all()


def test_settings_and_their_checks():
    fab = build_attack("fab")
    assert isinstance(fab, FAB) and not fab.targeted
    assert fab.settings() == {"steps": 100, "step_size": None, "restarts": 1, "attack_loss": "margin",
                              "norm": "Linf", "source": None,
        "source_sha256": None}
    assert (fab.targets, fab.norm, fab.alpha_max, fab.eta, fab.beta) == (9, "Linf", 0.1, 1.05, 0.9)
    assert build_attack("fab", steps=7, restarts=2, norm="L2").settings()["steps"] == 7
    bad = [{"norm": "L1"}, {"targets": 0}, {"targets": 2.5}, {"steps": 0}, {"restarts": 0}, {"beta": 1.5},
           {"eta": 0}, {"alpha_max": -0.1}, {"loss": "ce"}, {"step_size": 0.1}]
    for setting in bad:
        with pytest.raises(RobenchError):
            build_attack("fab", **setting)
