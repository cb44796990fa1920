"""DLR loss, PGD restarts on the still-robust images only, ART-only apgd/square, and transfer."""

import numpy as np
import pytest
import torch
from test_attacks import D, easy, source  # noqa: F401  (module fixtures: the easy model and a transfer source)
from conftest import Counting
from torch import nn

from robench.attacks import (ATTACKS, PGD, attack_backends, attack_objective, build_attack, default_backend)
from robench.errors import RobenchError
from robench.evaluation.epsilon import absolute_radii
from robench.files import file_sha256
from robench.models.checkpoints import load_checkpoint


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def dlr_numpy(z, y, t=None):
    """Croce & Hein (2020) DLR, untargeted (t None) or targeted at t, written independently."""
    rows = np.arange(len(z))
    top = -np.sort(-z, axis=1)
    if t is None:
        others = np.where(np.eye(z.shape[1], dtype=bool)[y], -np.inf, z).max(1)
        return -(z[rows, y] - others) / (top[:, 0] - top[:, 2] + 1e-12)
    return -(z[rows, y] - z[rows, t]) / (top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + 1e-12)


# --- DLR ---------------------------------------------------------------------------------------------------------

def test_dlr_matches_numpy():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(64, 6, generator=gen, dtype=torch.float64) * 3
    y = torch.randint(0, 6, (64,), generator=gen)
    t = (y + 1) % 6
    untargeted = attack_objective(z, y, "dlr", targeted=False)
    targeted = attack_objective(z, t, "dlr", targeted=True, true_labels=y)
    np.testing.assert_allclose(untargeted.numpy(), dlr_numpy(z.numpy(), y.numpy()), rtol=1e-12)
    np.testing.assert_allclose(targeted.numpy(), dlr_numpy(z.numpy(), y.numpy(), t.numpy()), rtol=1e-12)
    # invariant to shifting and scaling the logits (the point of DLR)
    assert torch.allclose(attack_objective(5 * z + 2, y, "dlr", targeted=False), untargeted)
    assert torch.autograd.gradcheck(lambda v: attack_objective(v, y[:4], "dlr", False), z[:4].clone().requires_grad_())


def test_dlr_needs_enough_classes():
    with pytest.raises(RobenchError, match="at least 3 classes for an? untargeted attack; the model has 2"):
        attack_objective(torch.randn(4, 2), torch.zeros(4, dtype=torch.long), "dlr", targeted=False)
    with pytest.raises(RobenchError, match="at least 4 classes for a targeted attack; the model has 3"):
        attack_objective(torch.randn(4, 3), torch.ones(4, dtype=torch.long), "dlr", targeted=True,
                         true_labels=torch.zeros(4, dtype=torch.long))
    x, y, eps = torch.rand(4, 1, 6, 6), torch.zeros(4, dtype=torch.long), torch.full((4,), 0.1)
    three = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    with pytest.raises(RobenchError, match="at least 4 classes"):
        build_attack("tgsm", loss="dlr")(three, x, y, eps)
    build_attack("pgd", loss="dlr")(three, x, y, eps)  # untargeted: 3 classes are enough
    with pytest.raises(RobenchError, match="at least 3 classes"):
        build_attack("pgd", loss="dlr")(nn.Sequential(nn.Flatten(), nn.Linear(36, 2)), x, y, eps)


@pytest.mark.parametrize("loss", ["margin", "dlr"])
def test_pgd_with_margin_and_dlr_lowers_accuracy(easy, loss):
    model, x, y = easy
    torch.manual_seed(0)
    x_adv = build_attack("pgd", loss=loss)(model, x, y, absolute_radii(x, 0.3, "relative"))
    assert accuracy(model, x_adv, y) <= accuracy(model, x, y) - 0.5


def test_targeted_dlr_puts_the_target_above_the_true_class(easy):
    """The targeted DLR only compares z_t with z_y (AutoAttack's APGD-T uses it to misclassify),
    so it need not make t the top class, but it must lift z_t above z_y."""
    model, x, y = easy
    x_adv = build_attack("tgsm", loss="dlr")(model, x, y, absolute_radii(x, 1.0, "absolute"))
    with torch.no_grad():
        z = model(x_adv)
    assert (z.gather(1, ((y + 1) % D)[:, None]) > z.gather(1, y[:, None])).float().mean() >= 0.9
    assert accuracy(model, x_adv, y) <= 0.1


def test_native_and_art_pgd_agree_on_dlr(easy):
    model, x, y = easy
    eps = absolute_radii(x, 0.15, "relative")
    native, art = (build_attack("pgd", b, loss="dlr", random_start=False)(model, x, y, eps) for b in ("native", "art"))
    assert abs(accuracy(model, native, y) - accuracy(model, art, y)) <= 0.01


# --- PGD restarts ------------------------------------------------------------------------------------------------

def test_pgd_restarts_attack_only_still_robust_images(easy):
    model, x, y = easy
    eps = absolute_radii(x, 0.15, "relative")  # fools about half the images
    steps, restarts = 5, 4
    torch.manual_seed(1)
    one = PGD(steps=steps)(model, x, y, eps)
    counting = Counting(model)
    torch.manual_seed(1)
    more = PGD(steps=steps, restarts=restarts)(counting, x, y, eps)
    fooled_once = model(one).argmax(1) != y
    assert 0 < fooled_once.sum() < len(y)  # the test needs images fooled by the first run, and others not
    assert counting.images < restarts * steps * len(y)
    assert counting.images <= (steps + 1) * (len(y) + (restarts - 1) * int((~fooled_once).sum()))
    assert torch.equal(more[fooled_once], one[fooled_once])  # a fooled image keeps its first example
    assert accuracy(model, more, y) <= accuracy(model, one, y)


# --- ART versions of apgd and square -----------------------------------------------------------------------------------

ADAPTIVE = [("apgd", {"loss": "ce"}), ("apgd", {"loss": "dlr"}), ("square", {"steps": 200})]


@pytest.mark.parametrize("name,settings", ADAPTIVE)
def test_adaptive_attacks_stay_in_ball_and_lower_accuracy(easy, name, settings):
    model, x, y = easy
    clean = accuracy(model, x, y)
    for eps_value, most in [(0.02, clean), (0.5, 0.2)]:
        eps = absolute_radii(x, eps_value, "absolute")
        torch.manual_seed(0)
        x_adv = build_attack(name, "art", **settings)(model, x, y, eps)
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        assert ((x_adv - x).abs().flatten(1).amax(1) <= eps + 1e-6).all()
        assert accuracy(model, x_adv, y) <= most, (name, eps_value)


@pytest.mark.parametrize("name", ["apgd", "square"])
def test_art_attacks_are_reproducible_and_leave_numpy_alone(easy, name):
    model, x, y = easy
    eps = absolute_radii(x, 0.1, "absolute")
    attack = build_attack(name, "art", steps=20)
    outputs = []
    for seed in (0, 0, 1):
        np.random.seed(123)
        torch.manual_seed(seed)
        outputs.append(attack(model, x, y, eps))
        assert np.random.random() == np.random.RandomState(123).random()  # numpy's global state restored
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])


def test_apgd_dlr_class_count(easy):
    _, x, y = easy
    eps = torch.full((len(x),), 0.1)
    three = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    build_attack("apgd", "art", loss="dlr", steps=5)(three, x, y % 3, eps)  # ART indexes the 3rd largest logit
    with pytest.raises(RobenchError, match="at least 3 classes"):
        build_attack("apgd", "art", loss="dlr", steps=5)(nn.Sequential(nn.Flatten(), nn.Linear(36, 2)), x, y % 2, eps)


def test_art_versions_settings_and_errors():
    assert [default_backend(n) for n in ("apgd", "square", "pgd", "tgsm", "jsma", "transfer", "apgd-t", "fab")] == \
        ["native"] * 8
    assert attack_backends("pgd") == attack_backends("apgd") == attack_backends("square") == ("native", "art")
    assert ATTACKS.backends("apgd-t") == ATTACKS.backends("fab") == ("native",)
    assert build_attack("apgd", "art").settings() == {"steps": 100, "step_size": 2.0, "restarts": 1,
                                                      "attack_loss": "ce", "norm": "Linf", "source": None,
                                                      "source_sha256": None}
    assert build_attack("square", "art").settings() == {"steps": 1000, "step_size": None, "restarts": 1,
                                                        "attack_loss": "margin", "norm": "Linf", "source": None,
                                                        "source_sha256": None}
    for name in ("apgd-t", "fab"):
        with pytest.raises(RobenchError, match=f"^{name} runs natively only"):
            build_attack(name, "art")
    with pytest.raises(RobenchError, match=r"^square \(art\) does not take --attack-loss; it takes: --steps"):
        build_attack("square", "art", loss="ce")
    with pytest.raises(RobenchError, match="apgd takes attack loss ce or dlr, not 'margin'"):
        build_attack("apgd", "art", loss="margin")
    with pytest.raises(RobenchError, match=r"^tgsm with attack loss dlr runs natively only \(ART's loss does not"):
        build_attack("tgsm", "art", loss="dlr")
    with pytest.raises(RobenchError, match="square cannot attack 4x4 images"):
        build_attack("square", "art")(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), torch.rand(2, 1, 4, 4),
                                      torch.zeros(2, dtype=torch.long), torch.full((2,), 0.1))


# --- transfer ----------------------------------------------------------------------------------------------------

def test_transfer_to_itself_is_pgd(easy, source):
    _, x, y = easy
    model = load_checkpoint(source)[0]
    eps = absolute_radii(x, 0.2, "relative")
    torch.manual_seed(3)
    transfer = build_attack("transfer", "native", source=source, steps=7, restarts=2, loss="margin")
    crafted = transfer(model, x, y, eps)
    torch.manual_seed(3)
    assert torch.equal(crafted, build_attack("pgd", "native", steps=7, restarts=2, loss="margin")(model, x, y, eps))
    assert transfer.settings() == {"steps": 7, "step_size": 2.5 / 7, "restarts": 2, "attack_loss": "margin",
                                   "norm": "Linf", "source": source,
                                   "source_sha256": file_sha256(f"{source}/model.safetensors")}
    assert build_attack("transfer", source=source).settings()["steps"] == 20


def test_transfer_attacks_another_model(easy, source):
    model, x, y = easy
    torch.manual_seed(0)
    x_adv = build_attack("transfer", source=source)(model, x, y, absolute_radii(x, 0.5, "absolute"))
    assert accuracy(model, x_adv, y) < accuracy(model, x, y)


def test_transfer_errors(easy, source):
    _, x, y = easy
    eps = torch.full((len(x),), 0.1)
    with pytest.raises(RobenchError, match=r"^transfer needs a source checkpoint \(--transfer-from RUN_DIR\)$"):
        build_attack("transfer", "native", source=None)
    with pytest.raises(RobenchError, match="transfer runs natively only"):
        build_attack("transfer", "art", source=source)
    with pytest.raises(RobenchError, match="does not fit the attacked model: 4 classes vs 3"):
        build_attack("transfer", source=source)(nn.Sequential(nn.Flatten(), nn.Linear(36, 3)), x, y % 3, eps)
    with pytest.raises(RobenchError, match=r"input shape \(1, 6, 6\) vs \(1, 8, 8\)"):
        build_attack("transfer", source=source)(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)),
                                                torch.rand(2, 1, 8, 8), y[:2], eps[:2])
    with pytest.raises(RobenchError, match="not found"):
        build_attack("transfer", source=str(source) + "-missing")(easy[0], x, y, eps)
