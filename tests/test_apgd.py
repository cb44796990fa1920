"""Native APGD and APGD-T (Croce & Hein 2020): the checkpoint schedule and the step-size rule against
hand-computed cases, the best iterate, L2 invariants, and the attack strength against PGD, torchattacks
(the peer implementation) and, for APGD-T on a linear model, the exact robust accuracy."""

import pytest
import torch
from test_attacks import D, easy  # noqa: F401  (module fixture: the easy linear model)
from conftest import Counting
from torch import nn

from robench.attacks import build_attack, default_backend
from robench.attacks.apgd import APGD, StepSizeRule, auto_pgd, checkpoints
from robench.attacks.apgd_t import ranked_targets
from robench.attacks.base import attack_objective, per_image
from robench.errors import RobenchError
from robench.norms import distance, random_start

ONE_IMAGE = 1 / 48  # the slack: one image of the easy test set


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


# --- the schedule and the step-size rule -------------------------------------------------------------------------

def test_checkpoints_follow_the_paper():
    # p = 0, .22, .41 (+.19), .57 (+.16), .70 (+.13), .80 (+.10), .87 (+.07), .93 (+.06), .99 (+.06); 1.05 > 1
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1000) == [0, 220, 410, 570, 700, 800, 870, 930, 990]
    assert checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10]  # ⌈2.2⌉, ⌈4.1⌉, ⌈5.7⌉, 7, 8, ⌈8.7⌉, ⌈9.3⌉ = ⌈9.9⌉
    assert checkpoints(1) == [0, 1]


def test_step_size_halving_conditions():
    """Three images: L grows every step (never halved); L constant (condition 1 at every checkpoint);
    L grows every step but stays below L(x⁰) = 10 (condition 2, at every other checkpoint, since it
    needs η not halved at the previous one)."""
    steps = 100
    rule = StepSizeRule(torch.full((3,), 2.0), torch.tensor([0.0, 0.0, 10.0]), steps)
    halved = {0: [], 1: [], 2: []}
    for k in range(steps):
        _, halve = rule.update(k, torch.tensor([k + 1.0, 0.0, 0.01 * (k + 1)]))
        for image in halve.nonzero().flatten().tolist():
            halved[image].append(k)
    assert halved == {0: [], 1: [22, 41, 57, 70, 80, 87, 93, 99], 2: [22, 57, 80, 93]}
    assert torch.equal(rule.eta, torch.tensor([2.0, 2.0 / 2**8, 2.0 / 2**4]))
    assert torch.equal(rule.loss_max, torch.tensor([100.0, 0.0, 10.0]))


def test_condition_one_counts_the_increases_against_rho():
    """Window w₀..w₁ = 22 steps: 17 increases (≥ 0.75·22 = 16.5) keep η, 16 halve it."""
    for ups, halved in ((17, False), (16, True)):
        rule = StepSizeRule(torch.ones(1), torch.zeros(1), 100)
        losses = [float(i + 1) for i in range(ups)] + [float(ups)] * (22 - ups) + [100.0]  # L_max grows at k = 22
        for k, value in enumerate(losses):
            _, halve = rule.update(k, torch.tensor([value]))
        assert bool(halve) == halved and rule.eta.item() == (0.5 if halved else 1.0)


def test_dlr_against_hand_computed_values():
    z3 = torch.tensor([[3.0, 1.0, 2.0]])
    assert attack_objective(z3, torch.tensor([0]), "dlr", False).item() == pytest.approx(-(3 - 2) / (3 - 1))
    assert attack_objective(z3, torch.tensor([1]), "dlr", False).item() == pytest.approx(-(1 - 3) / (3 - 1))
    z4 = torch.tensor([[4.0, 1.0, 3.0, 0.0]])
    assert attack_objective(z4, torch.tensor([2]), "dlr", False).item() == pytest.approx(-(3 - 4) / (4 - 1))
    targeted = attack_objective(z4, torch.tensor([2]), "dlr", True, true_labels=torch.tensor([0]))
    assert targeted.item() == pytest.approx(-(4 - 3) / (4 - (1 + 0) / 2))


def test_targets_are_ranked_by_the_clean_logits():
    z = torch.tensor([[0.0, 5.0, 3.0, 4.0], [9.0, 1.0, 2.0, 3.0]])
    assert ranked_targets(z, torch.tensor([1, 0]), 3).tolist() == [[3, 2, 0], [3, 2, 1]]


# --- the returned point ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm,eps_value", [("Linf", 0.05), ("L2", 0.3)])
def test_the_best_iterate_is_returned(easy, norm, eps_value):
    model, x, y = easy
    torch.manual_seed(0)
    eps = torch.full((len(x),), eps_value)
    radius = per_image(eps, x)
    run = auto_pgd(model, x, y, radius, 2 * eps, 100, "dlr", norm, start=random_start(x, radius, norm))
    with torch.no_grad():
        best = attack_objective(model(run.x_best), y, "dlr", False)
        last = attack_objective(model(run.x_last), y, "dlr", False)
    kept = ~run.fooled
    assert kept.sum() > 0
    assert (best[kept] >= last[kept] - 1e-6).all()
    assert (best[kept] > last[kept] + 1e-6).any()  # the last iterate is not the best one for some images
    assert torch.allclose(best[kept], run.loss_best[kept])
    assert (model(run.x_best[run.fooled]).argmax(1) != y[run.fooled]).all()


# --- strength: PGD, torchattacks, the exact answer ---------------------------------------------------------------

def peer_accuracy(model, x, y, eps_value, norm, loss=None):
    torchattacks = pytest.importorskip("torchattacks")
    if loss is None:
        attack = torchattacks.APGDT(model, norm=norm, eps=eps_value, steps=100, n_classes=D, seed=0)
    else:
        attack = torchattacks.APGD(model, norm=norm, eps=eps_value, steps=100, loss=loss, seed=0)
    return accuracy(model, attack(x, y), y)


@pytest.mark.parametrize("norm,eps_value", [("Linf", 0.12), ("Linf", 0.14), ("L2", 0.7), ("L2", 0.8)])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_is_at_least_as_strong_as_pgd_and_torchattacks(easy, norm, eps_value, loss):
    model, x, y = easy
    eps = torch.full((len(x),), eps_value)
    torch.manual_seed(0)
    ours = accuracy(model, build_attack("apgd", "native", loss=loss, norm=norm)(model, x, y, eps), y)
    assert ours < accuracy(model, x, y)
    assert ours <= peer_accuracy(model, x, y, eps_value, norm, loss) + ONE_IMAGE
    if norm == "Linf":  # robench's PGD is L∞ only
        torch.manual_seed(0)
        pgd = accuracy(model, build_attack("pgd", "native", loss=loss, steps=100)(model, x, y, eps), y)
        assert ours <= pgd + ONE_IMAGE


@pytest.mark.parametrize("norm,eps_value", [("Linf", 0.12), ("Linf", 0.14), ("L2", 0.7), ("L2", 0.8)])
def test_apgd_t_is_at_least_as_strong_as_torchattacks(easy, norm, eps_value):
    model, x, y = easy
    torch.manual_seed(0)
    ours = accuracy(model, build_attack("apgd-t", norm=norm)(model, x, y, torch.full((len(x),), eps_value)), y)
    assert ours <= peer_accuracy(model, x, y, eps_value, norm) + ONE_IMAGE


def exact_linf_robust_accuracy(model, x, y, eps_value) -> float:
    """For a linear model the strongest L∞ attack on class j is δ_i = ε·sign(w_j − w_y)_i clipped to the box."""
    weight, bias = model[1].weight.detach(), model[1].bias.detach()
    flat, robust = x.flatten(1), torch.ones(len(x), dtype=torch.bool)
    for j in range(weight.shape[0]):
        direction = weight[j] - weight[y]
        worst = torch.minimum(torch.maximum((flat + eps_value * direction.sign()).clamp(0, 1), flat - eps_value),
                              flat + eps_value)
        robust &= ((worst * direction).sum(1) + bias[j] - bias[y] < 0) | (y == j)
    return robust.float().mean().item()


@pytest.mark.parametrize("eps_value", [0.12, 0.14, 0.16])
def test_apgd_t_finds_the_exact_robust_accuracy_of_a_linear_model(easy, eps_value):
    model, x, y = easy
    exact = exact_linf_robust_accuracy(model, x, y, eps_value)
    torch.manual_seed(0)
    ours = accuracy(model, build_attack("apgd-t")(model, x, y, torch.full((len(x),), eps_value)), y)
    assert exact <= ours <= exact + ONE_IMAGE


# --- the contract in L2, restarts, settings ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["apgd", "apgd-t"])
def test_l2_invariants(easy, name):
    model, x, y = easy
    clean = accuracy(model, x, y)
    eps = torch.tensor([0.0, 0.3, 1.0, 3.0]).repeat(len(x) // 4)
    torch.manual_seed(0)
    x_adv = build_attack(name, norm="L2", steps=20)(model, x, y, eps)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (distance(x_adv, x, "L2") <= eps + 1e-5).all()
    assert torch.equal(x_adv[eps == 0], x[eps == 0])
    assert accuracy(model, x_adv, y) <= clean
    assert accuracy(model, x_adv[eps == 3.0], y[eps == 3.0]) == 0
    assert torch.equal(build_attack(name, norm="L2")(model, x, y, torch.zeros(len(x))), x)


def test_apgd_restarts_attack_only_still_robust_images(easy):
    model, x, y = easy
    eps = torch.full((len(x),), 0.13)
    torch.manual_seed(1)
    one = APGD(steps=20)(model, x, y, eps)
    counting = Counting(model)
    torch.manual_seed(1)
    more = APGD(steps=20, restarts=4)(counting, x, y, eps)
    fooled_once = model(one).argmax(1) != y
    assert 0 < fooled_once.sum() < len(y)
    robust = int((~fooled_once).sum())
    assert 21 * (len(y) + robust) <= counting.images <= 21 * (len(y) + 3 * robust)  # 21 points per run
    assert torch.equal(more[fooled_once], one[fooled_once])  # a fooled image keeps its first example
    assert accuracy(model, more, y) <= accuracy(model, one, y)


@pytest.mark.parametrize("targets,runs", [(9, 3), (2, 2)])  # capped at D − 1 = 3 targets
def test_apgd_t_runs_once_per_target_on_robust_images(easy, targets, runs):
    model, x, y = easy
    counting = Counting(model)
    build_attack("apgd-t", steps=5, targets=targets)(counting, x, y, torch.full((len(x),), 0.01))  # fools none
    assert counting.images == len(x) * (1 + runs * 6)  # the clean pass, then 6 points per run


def test_no_host_device_synchronisation():
    """On the meta device a tensor has no values: any .item() or bool(tensor) in the run would raise."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 5)).to("meta")
    x, y = torch.rand(8, 1, 6, 6, device="meta"), torch.zeros(8, dtype=torch.long, device="meta")
    radius = torch.full((8, 1, 1, 1), 0.1, device="meta")
    for norm in ("Linf", "L2"):
        for loss in ("ce", "margin", "dlr"):
            run = auto_pgd(model, x, y, radius, 2 * radius.flatten(), 5, loss, norm, start=random_start(x, radius, norm))
            assert run.x_best.device.type == "meta" and run.eta.shape == (8,)
        auto_pgd(model, x, (y + 1) % 5, radius, 2 * radius.flatten(), 5, "dlr", norm, targeted=True, true_labels=y)


def test_settings_and_errors():
    assert default_backend("apgd") == default_backend("apgd-t") == "native"
    assert build_attack("apgd").settings() == {"steps": 100, "step_size": 2.0, "restarts": 1, "attack_loss": "ce",
                                               "norm": "Linf", "source": None,
        "source_sha256": None}
    assert build_attack("apgd-t", steps=50, restarts=2).settings() == {
        "steps": 50, "step_size": 2.0, "restarts": 2, "attack_loss": "dlr", "norm": "Linf", "source": None,
        "source_sha256": None}
    assert build_attack("apgd", loss="margin", norm="L2", step_size=1.5).settings()["step_size"] == 1.5
    assert build_attack("apgd", norm="L2").settings()["norm"] == "L2"
    assert not build_attack("apgd-t").targeted
    with pytest.raises(RobenchError, match="unknown norm 'L1'"):
        build_attack("apgd", norm="L1")
    for name in ("apgd", "apgd-t"):
        for setting in ({"rho": 0.0}, {"alpha": 1.5}):
            with pytest.raises(RobenchError, match=f"^{name}: (rho|alpha) must be a number in"):
                build_attack(name, **setting)
    with pytest.raises(RobenchError, match="targets must be an integer"):
        build_attack("apgd-t", targets=0)
    with pytest.raises(RobenchError, match=r"^apgd-t \(native\) does not take --attack-loss"):
        build_attack("apgd-t", loss="ce")
    x, y, eps = torch.rand(4, 1, 6, 6), torch.zeros(4, dtype=torch.long), torch.full((4,), 0.1)
    with pytest.raises(RobenchError, match="at least 4 classes for a targeted attack; the model has 3"):
        build_attack("apgd-t")(nn.Sequential(nn.Flatten(), nn.Linear(36, 3)), x, y, eps)
    with pytest.raises(RobenchError, match="at least 3 classes"):
        build_attack("apgd", loss="dlr", steps=5)(nn.Sequential(nn.Flatten(), nn.Linear(36, 2)), x, y, eps)
