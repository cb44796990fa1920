"""Every attack on every backend it runs on: stays in [0, 1] and its ε-ball, leaves x alone at
ε = 0, does not raise accuracy, and hits its target on an easy model; native and ART agree."""

import pytest
import torch
from torch import nn

from robench.attacks import (ATTACKS, BACKENDS, attack_backends, attack_objective, build_attack, target_labels)
from robench.attacks.registry import accepted_settings
from robench.data import load_dataset
from robench.errors import RobenchError
from robench.evaluation.epsilon import absolute_radii, parse_eps_grid

D = 4
EASY = {"num_classes": D, "image_size": 6, "n_train": 256, "n_test": 48}
FEW_STEPS = {"jsma": 20, "apgd": 10, "square": 30, "transfer": 5, "autoattack": 10}  # enough for the invariants, and fast


@pytest.fixture(scope="module")
def easy():
    """A linear model trained on separable synthetic data: accurate and easy to fool."""
    torch.manual_seed(0)
    data = load_dataset("synthetic", options=EASY)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, D))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        loss = nn.functional.cross_entropy(model(data.x_train), data.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert (model(data.x_test).argmax(1) == data.y_test).float().mean() > 0.9
    return model, data.x_test, data.y_test


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A small-cnn run trained on the easy data (1x6x6, D classes): the source of ``transfer``."""
    from robench.training.config import TrainConfig
    from robench.training.loop import train

    out = tmp_path_factory.mktemp("source") / "run"
    train(TrainConfig(dataset="synthetic", dataset_options=EASY, model="small-cnn", model_options={"hidden": 16},
                      loss="ce", out=str(out), epochs=3, batch_size=32), device="cpu", progress=False)
    return str(out)


CASES = [(name, backend) for name in ATTACKS.names() for backend in attack_backends(name)]


def run(name, backend, model, x, y, eps, source=None, **settings):
    """Build and run one attack; ``source`` goes to ``transfer`` only, ART gets its batch size."""
    extra = {"source": source} if name == "transfer" else {}
    if backend == "art":
        extra["batch_size"] = 64
    if name == "autoattack":
        extra["queries"] = 100
    attack = build_attack(name, backend, **extra, **settings)
    return attack, attack(model, x, y, eps)


def test_cases_cover_every_attack_and_backend():
    assert {name for name, _ in CASES} == set(ATTACKS.names())
    assert {backend for _, backend in CASES} == set(BACKENDS)
    assert ("apgd", "art") in CASES and ("apgd", "native") in CASES and ("apgd-t", "art") not in CASES
    assert ("transfer", "native") in CASES and ("transfer", "art") not in CASES


@pytest.mark.parametrize("name,backend", CASES)
@pytest.mark.parametrize("eps_value", [0.05, 0.3])
def test_adversarial_images_stay_in_box_and_ball(easy, source, name, backend, eps_value):
    model, x, y = easy
    eps = absolute_radii(x, eps_value, "relative")
    _, x_adv = run(name, backend, model, x, y, eps, steps=FEW_STEPS.get(name), source=source)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert ((x_adv - x).abs().flatten(1).amax(1) <= eps + 1e-6).all()


@pytest.mark.parametrize("name,backend", CASES)
def test_settings_give_every_row_column(source, name, backend):
    settings = build_attack(name, backend, source=source if name == "transfer" else None).settings()
    assert set(settings) == {"steps", "step_size", "restarts", "attack_loss", "norm", "source", "source_sha256"}
    assert settings["norm"] == "Linf"
    assert settings["source"] == (source if name == "transfer" else
                                  "apgd-ce -> apgd-t -> fab-t -> square-5000" if name == "autoattack" else None)
    assert (settings["source_sha256"] is not None) == (name == "transfer")
    assert settings["attack_loss"] in ("ce", "margin", "dlr", "saliency", "ensemble")


L2_CASES = [(name, backend) for name, backend in CASES if "norm" in accepted_settings(ATTACKS.get(name, backend))]


def test_the_l2_threat_model_is_where_robustbench_has_it():
    assert {name for name, _ in L2_CASES} >= {"pgd", "apgd", "apgd-t", "fab", "square", "transfer"}


@pytest.mark.parametrize("name,backend", L2_CASES)
def test_l2_adversarial_images_stay_in_box_and_l2_ball(easy, source, name, backend):
    model, x, y = easy
    eps = absolute_radii(x, 0.5, "absolute", "L2")
    attack, x_adv = run(name, backend, model, x, y, eps, steps=FEW_STEPS.get(name), source=source, norm="L2")
    assert attack.settings()["norm"] == "L2"
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert ((x_adv - x).flatten(1).norm(dim=1) <= eps + 1e-5).all()
    with torch.no_grad():
        assert (model(x_adv).argmax(1) == y).float().mean() <= (model(x).argmax(1) == y).float().mean()


@pytest.mark.parametrize("name,backend", CASES)
def test_zero_eps_returns_x(easy, source, name, backend):
    model, x, y = easy
    _, x_adv = run(name, backend, model, x, y, torch.zeros(len(x)), source=source)
    assert torch.equal(x_adv, x)


@pytest.mark.parametrize("name,backend", CASES)
def test_attacks_do_not_raise_accuracy_and_hit_targets(easy, source, name, backend):
    model, x, y = easy
    if name == "transfer":  # only a white-box transfer (the model is its own source) is sure not to help
        from robench.models.checkpoints import load_checkpoint

        model = load_checkpoint(source)[0]
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean()
    attack, x_adv = run(name, backend, model, x, y, absolute_radii(x, 1.0, "absolute"), source=source,
                        steps=FEW_STEPS.get(name) if name == "square" else None)
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    assert (pred == y).float().mean() <= clean
    if attack.targeted:
        assert (pred == target_labels(y, D)).float().mean() >= 0.9, name
    else:
        assert (pred == y).float().mean() <= 0.1


@pytest.mark.parametrize("name", ["pgd", "tgsm"])
def test_native_and_art_agree_without_random_start(easy, name):
    model, x, y = easy
    eps = absolute_radii(x, 0.15, "relative")
    accuracies = []
    for backend in BACKENDS:
        _, x_adv = run(name, backend, model, x, y, eps, **({"random_start": False} if name == "pgd" else {}))
        with torch.no_grad():
            accuracies.append((model(x_adv).argmax(1) == y).float().mean().item())
    assert abs(accuracies[0] - accuracies[1]) <= 0.01, accuracies


def test_pgd_restarts_are_at_least_as_strong(easy):
    model, x, y = easy
    eps = absolute_radii(x, 0.1, "relative")
    torch.manual_seed(1)
    one = run("pgd", "native", model, x, y, eps)[1]
    torch.manual_seed(1)
    five = run("pgd", "native", model, x, y, eps, restarts=5)[1]
    with torch.no_grad():
        assert (model(five).argmax(1) == y).sum() <= (model(one).argmax(1) == y).sum()


def test_margin_objective():
    z = torch.tensor([[3.0, 1.0, 2.0]])
    assert attack_objective(z, torch.tensor([0]), "margin", False).item() == pytest.approx(-1.0)  # 2 - 3
    assert attack_objective(z, torch.tensor([2]), "margin", True).item() == pytest.approx(-1.0)   # 2 - 3
    ce = attack_objective(z, torch.tensor([1]), "ce", False)
    assert ce.item() == pytest.approx(-torch.log_softmax(z, 1)[0, 1].item())
    assert attack_objective(z, torch.tensor([1]), "ce", True).item() == pytest.approx(-ce.item())


def test_relative_and_absolute_radii():
    x = torch.zeros(2, 1, 2, 2)
    x[0, 0, 0, 0] = 0.5
    x[1, 0, 1, 1] = 1.0
    assert torch.allclose(absolute_radii(x, 0.1, "relative"), torch.tensor([0.05, 0.1]))
    assert torch.allclose(absolute_radii(x, 0.1, "absolute"), torch.tensor([0.1, 0.1]))


def test_eps_grid_parsing():
    assert parse_eps_grid("0.1,0,0.05") == [0.0, 0.05, 0.1]
    assert parse_eps_grid("0:0.1:3") == [0.0, 0.05, 0.1]
    for bad in ("0,a", "0:1", "0:1:0", "0,-0.1", ""):
        with pytest.raises(RobenchError):
            parse_eps_grid(bad)


def test_unknown_names_are_clear_errors():
    with pytest.raises(RobenchError, match="did you mean 'pgd'"):
        build_attack("pdg")
    with pytest.raises(RobenchError, match="unknown backend"):
        build_attack("pgd", "foolbox")
    with pytest.raises(RobenchError, match="unknown attack loss"):
        build_attack("pgd", loss="hinge")


def test_every_attack_name_has_a_description_and_a_backend():
    for entry in ATTACKS.entries():
        assert entry.description and attack_backends(entry.name)
    with pytest.raises(ValueError, match="already registered"):
        ATTACKS.add("pgd", "native", type("Again", (), {}))


@pytest.mark.parametrize("name,setting", [("tgsm", {"restarts": 5}), ("jsma", {"loss": "margin"}),
                                          ("pgd", {"eps_typo": 0.3}), ("pgd", {"source": "runs/x"}),
                                          ("jsma", {"batch_size": 8})])
def test_settings_an_attack_does_not_take_are_errors(name, setting):
    with pytest.raises(RobenchError, match=rf"^{name} \(native\) does not take .*; it takes: "):
        build_attack(name, "native", **setting)
    build_attack(name, "native", **{key: None for key in setting})  # None: "not given", accepted
