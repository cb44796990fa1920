"""The native Square Attack: the paper's p schedule and η, the query budget, a margin that never rises,
the L2 ball, and strength and speed against torchattacks' and ART's Square at the same budget."""

import copy
import math
import time

import numpy as np
import pytest
import torch
import torchattacks
from test_attacks import easy  # noqa: F401  (module fixture: the easy model)
from torch import nn

from robench.attacks import build_attack
from robench.attacks.art import art_classifier
from robench.attacks.base import per_image
from robench.attacks.square import (Square, eta, l2_candidate, l2_start, p_schedule, square_side)
from robench.errors import RobenchError
from robench.evaluation.epsilon import absolute_radii


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def margin(model, x, y) -> torch.Tensor:
    with torch.no_grad():
        z = model(x)
    return z.gather(1, y[:, None])[:, 0] - z.scatter(1, y[:, None], -math.inf).amax(1)


# --- schedule and shapes ------------------------------------------------------------------------------------------

# (first iteration of each p, p) worked out by hand from i' = floor(10000 i / N) > 10, 50, 200, ..., 8000
SCHEDULES = {5000: [(0, 0.8), (6, 0.4), (26, 0.2), (101, 0.1), (251, 0.05), (501, 0.025), (1001, 0.0125),
                    (2001, 0.00625), (3001, 0.003125), (4001, 0.0015625)],
             1000: [(0, 0.8), (2, 0.4), (6, 0.2), (21, 0.1), (51, 0.05), (101, 0.025), (201, 0.0125),
                    (401, 0.00625), (601, 0.003125), (801, 0.0015625)]}


@pytest.mark.parametrize("steps", sorted(SCHEDULES))
def test_p_schedule_halves_at_the_rescaled_milestones(steps):
    changes = SCHEDULES[steps]
    for (first, p), (following, _) in zip(changes, changes[1:] + [(steps - 1, None)]):
        assert p_schedule(first, steps) == pytest.approx(p)
        assert p_schedule(following - 1, steps) == pytest.approx(p)  # the last iteration with this p
    assert p_schedule(6, 5000, p_init=0.5) == pytest.approx(0.25)


def test_square_side():
    assert square_side(0.8, 32, 32) == 29              # round(sqrt(0.8 * 1024)) = round(28.6)
    assert square_side(0.05, 32, 32) == 7              # round(7.16)
    assert square_side(0.0015625, 32, 32) == 1         # round(1.26)
    assert square_side(0.0015625, 32, 32, "L2") == 3   # L2: at least 3 ...
    assert square_side(0.025, 32, 32, "L2") == 5       # ... and odd: round(5.06) = 5
    assert square_side(0.035, 32, 32, "L2") == 7       # round(5.99) = 6 -> 7
    assert square_side(0.8, 6, 6) == 5 and square_side(1.0, 4, 6) == 4  # never larger than the image


def eta_numpy(s: int) -> np.ndarray:
    """The authors' ``eta``: two rectangles of concentric rings, written independently with loops."""

    def rectangle(a, b):
        out = np.zeros((a, b))
        for ring in range(max(a, b) // 2 + 1):
            out[max(a // 2 - ring, 0):a // 2 + ring + 1, max(b // 2 - ring, 0):b // 2 + ring + 1] += 1 / (ring + 1) ** 2
        return out / max(np.sqrt((out ** 2).sum()), 1e-12)

    pattern = np.concatenate([rectangle(s // 2, s), -rectangle(s - s // 2, s)])
    return pattern / np.sqrt((pattern ** 2).sum())


@pytest.mark.parametrize("side", [1, 2, 3, 5, 8, 11])
def test_eta_matches_numpy(side):
    np.testing.assert_allclose(eta(side, dtype=torch.float64).numpy(), eta_numpy(side), rtol=1e-12, atol=1e-12)


# --- queries and the margin ---------------------------------------------------------------------------------------

class PerImageCounts(nn.Module):
    """Counts, per clean image, the evaluations of points near it (the nearest clean image)."""

    def __init__(self, model, x):
        super().__init__()
        self.model, self.x, self.counts = model, x.flatten(1), torch.zeros(len(x), dtype=torch.long)

    def forward(self, images):
        nearest = torch.cdist(images.flatten(1), self.x).argmin(1)
        self.counts += torch.bincount(nearest, minlength=len(self.x))
        return self.model(images)


@pytest.fixture(scope="module")
def separated():
    """Random 12x12 images far apart (so a point of an eps-ball is nearest its own image) and a random
    linear model that classifies them all correctly (labels = its predictions)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(24, 1, 12, 12, generator=gen)
    model = nn.Sequential(nn.Flatten(), nn.Linear(144, 4))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(4, 144, generator=gen) / 12)
        return model.eval(), x, model(x).argmax(1)


@pytest.mark.parametrize("norm,eps_value", [("Linf", 0.05), ("L2", 0.6)])
@pytest.mark.parametrize("restarts", [1, 2])
def test_queries_stay_within_the_budget(separated, norm, eps_value, restarts):
    model, x, y = separated
    pairwise = torch.cdist(x.flatten(1), x.flatten(1)) + torch.eye(len(x)) * 1e9
    assert pairwise.min() > 2 * eps_value * (12 if norm == "Linf" else 1)  # nearest clean image = the one attacked
    y = y.clone()
    y[:4] = (y[:4] + 1) % 4                  # misclassified from the start
    eps = torch.full((len(x),), eps_value)
    eps[4:6] = 0                             # never attacked
    steps = 60
    counting = PerImageCounts(model, x)
    torch.manual_seed(0)
    attack = Square(steps=steps, restarts=restarts, norm=norm)
    x_adv = attack(counting, x, y, eps)
    assert attack.queries.shape == (len(x),) and attack.queries.dtype == torch.long
    assert torch.equal(attack.queries, counting.counts)  # every evaluation of an image is one of its queries
    assert attack.queries.max() <= restarts * steps
    assert (attack.queries[:4] == 1).all() and (attack.queries[4:6] == 0).all()
    assert torch.equal(x_adv[4:6], x[4:6])
    robust = model(x_adv).argmax(1) == y
    assert (attack.queries[robust & (eps > 0)] == restarts * steps).all()  # the robust ones spent their budget
    assert 0 < robust.sum() < len(x) - 6  # the test needs both kinds


@pytest.mark.parametrize("norm,eps_value", [("Linf", 0.12), ("L2", 1.0)])
def test_margin_never_increases(easy, norm, eps_value):
    model, x, y = easy
    attack = Square(steps=80, restarts=2, norm=norm)
    attack.record = True
    torch.manual_seed(0)
    x_adv = attack(model, x, y, absolute_radii(x, eps_value, "absolute"))
    history = attack.history
    assert history.shape[1] == len(x) and len(history) > 80  # the start and every iteration, of both runs
    assert (history[1:] <= history[:-1]).all()
    assert torch.equal(history[-1], attack.margins)
    assert torch.allclose(margin(model, x_adv, y), attack.margins, atol=1e-4)
    assert Square(steps=5).history is None  # recorded only on request


def test_same_seed_same_attack(easy):
    model, x, y = easy
    eps = absolute_radii(x, 0.12, "absolute")
    outputs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        outputs.append(Square(steps=30, norm="L2")(model, x, y, eps * 8))
    assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], outputs[2])


# --- the L2 ball --------------------------------------------------------------------------------------------------

def test_l2_start_and_steps_keep_the_norm(easy):
    model, x, y = easy
    eps = torch.linspace(0.2, 2.0, len(x))   # per-image radii
    radius = per_image(eps, x)
    torch.manual_seed(0)
    start = l2_start(x, radius)
    assert ((start - x).flatten(1).norm(dim=1) <= eps + 1e-6).all()
    assert start.min() >= 0 and start.max() <= 1
    attack = Square(steps=100, norm="L2")
    x_adv = attack(model, x, y, eps)
    assert ((x_adv - x).flatten(1).norm(dim=1) <= eps + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    mid = torch.full((8, 3, 10, 10), 0.5)    # away from the box: a step moves mass but keeps ||delta||_2 = eps
    small = per_image(torch.full((8,), 0.5), mid)
    current = l2_start(mid, small)
    for side in (3, 5, 9):
        current = l2_candidate(mid, current, small, side)
        assert torch.allclose((current - mid).flatten(1).norm(dim=1), torch.full((8,), 0.5), atol=1e-5)


# --- against torchattacks (strength) and ART (time) ---------------------------------------------------------------

BUDGET = 200
EPS = {"Linf": 0.12, "L2": 1.25}


def art_square(model, x, y, norm, eps_value, steps):
    """ART's SquareAttack: through robench's art backend for L∞, directly (ART's norm=2) for L2."""
    if norm == "Linf":
        return build_attack("square", "art", steps=steps)(model, x, y, absolute_radii(x, eps_value, "absolute"))
    from art.attacks.evasion import SquareAttack

    np.random.seed(0)
    attack = SquareAttack(art_classifier(model, x), norm=2, eps=eps_value, max_iter=steps, p_init=0.8,
                          nb_restarts=1, batch_size=len(x), verbose=False)
    return torch.from_numpy(attack.generate(x.numpy(), y=y.numpy()))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inside ART's L2 SquareAttack
@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_as_strong_as_torchattacks_and_faster_than_art(easy, norm):
    model, x, y = easy
    eps_value = EPS[norm]
    eps = absolute_radii(x, eps_value, "absolute")
    torch.manual_seed(0)
    start = time.perf_counter()
    native = build_attack("square", "native", steps=BUDGET, norm=norm)(model, x, y, eps)
    native_s = time.perf_counter() - start
    # torchattacks: a start query, then n_queries iterations, so BUDGET - 1 of them is the same budget
    peer = torchattacks.Square(model, norm=norm, eps=eps_value, n_queries=BUDGET - 1, seed=0)(x, y)
    assert accuracy(model, native, y) <= accuracy(model, peer, y) + 0.01
    art_square(model, x, y, norm, eps_value, 1)  # ART's imports out of the timing
    start = time.perf_counter()
    art = art_square(model, x, y, norm, eps_value, BUDGET)
    art_s = time.perf_counter() - start
    print(f"\nsquare {norm} eps={eps_value} budget={BUDGET} on {len(x)} images: robust accuracy native "
          f"{accuracy(model, native, y):.3f} ({native_s:.3f}s), torchattacks {accuracy(model, peer, y):.3f}, "
          f"ART {accuracy(model, art, y):.3f} ({art_s:.3f}s): ART/native time {art_s / native_s:.1f}x")


# --- settings -----------------------------------------------------------------------------------------------------

def test_settings_and_errors():
    assert build_attack("square").settings() == {"steps": 5000, "step_size": None, "restarts": 1,
                                                 "attack_loss": "margin", "norm": "Linf", "source": None,
        "source_sha256": None}
    assert build_attack("square", norm="L2", steps=10, restarts=3, p_init=0.5).settings()["restarts"] == 3
    with pytest.raises(RobenchError, match="square: unknown norm 'L1'"):
        build_attack("square", norm="L1")
    for bad in (0, 1.5, True, "0.8"):
        with pytest.raises(RobenchError, match="p_init must be a number in"):
            build_attack("square", p_init=bad)
    with pytest.raises(RobenchError, match=r"^square \(native\) does not take --attack-loss"):
        build_attack("square", "native", loss="ce")
    with pytest.raises(RobenchError, match="--steps must be at least 1"):
        build_attack("square", steps=0)


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_zero_eps_returns_x_with_no_queries(easy, norm):
    model, x, y = easy
    attack = Square(steps=10, norm=norm)
    x_adv = attack(model, x, y, torch.zeros(len(x)))
    assert torch.equal(x_adv, x) and x_adv is not x and (attack.queries == 0).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_runs_on_cuda(easy, norm):
    model, x, y = easy
    model, x, y = copy.deepcopy(model).cuda(), x.cuda(), y.cuda()
    eps = absolute_radii(x, EPS[norm], "absolute")
    attack = Square(steps=50, norm=norm)
    x_adv = attack(model, x, y, eps)
    assert x_adv.device == x.device and x_adv.min() >= 0 and x_adv.max() <= 1
    dist = (x_adv - x).flatten(1).abs().amax(1) if norm == "Linf" else (x_adv - x).flatten(1).norm(dim=1)
    assert (dist <= eps + 1e-5).all() and attack.queries.max() <= 50
