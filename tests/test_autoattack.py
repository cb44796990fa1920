"""The native AutoAttack ensemble: no weaker than its first part, than any part alone, or than the peer's."""

import pytest
import torch
from test_attacks import D, easy  # noqa: F401  (the easy model)

from robench.attacks import build_attack
from robench.attacks.autoattack import PARTS


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("norm,eps", [("Linf", 0.13), ("L2", 0.7)])
def test_ensemble_is_at_least_as_strong_as_its_parts_and_torchattacks(easy, norm, eps):
    import torchattacks

    model, x, y = easy
    radius = torch.full((len(x),), eps)
    torch.manual_seed(0)
    ensemble = build_attack("autoattack", norm=norm, queries=500)
    ours = accuracy(model, ensemble(model, x, y, radius), y)
    parts = {}
    for name, settings in (("apgd", {"loss": "ce"}), ("apgd-t", {}), ("fab", {}), ("square", {"steps": 500})):
        torch.manual_seed(0)
        parts[name] = accuracy(model, build_attack(name, norm=norm, **settings)(model, x, y, radius), y)
    assert ours <= min(parts.values()) + 1e-9, (ours, parts)
    peer = torchattacks.AutoAttack(model, norm=norm, eps=eps, version="standard", n_classes=D, seed=0)
    assert ours <= accuracy(model, peer(x, y), y) + 1 / len(y)
    broken = ensemble.broken_by
    clean = torch.tensor([accuracy(model, x[i:i + 1], y[i:i + 1]) == 1.0 for i in range(len(x))])
    assert int(((broken == -1) & clean).sum()) == round(ours * len(y))  # the robust ones: no part broke them
    assert set(broken[broken >= 0].tolist()) <= set(range(len(PARTS)))


def test_ensemble_settings_and_zero_eps(easy):
    model, x, y = easy
    attack = build_attack("autoattack")
    assert attack.settings()["source"] == "apgd-ce -> apgd-t -> fab-t -> square-5000"
    assert attack.settings()["norm"] == "Linf" and not attack.targeted
    assert torch.equal(attack(model, x, y, torch.zeros(len(x))), x)
