"""The --device cuda path: train, attack (every attack, both backends), sweep and run a recipe on a GPU.

Marked ``gpu`` (deselected by default; run with ``python -m pytest -m gpu`` on a machine with CUDA).
"""

import pytest
import torch

from robench.attacks import ATTACKS, attack_backends, build_attack
from robench.evaluation.audit import AuditConfig, run_audit
from robench.evaluation.epsilon import absolute_radii
from robench.models.checkpoints import load_checkpoint
from robench.training.loop import train
from tests.test_runner import TINY

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_train_on_cuda_loads_on_cpu(tiny_config):
    config = tiny_config("gccs", epochs=2)
    meta = train(config, device="cuda", progress=False)
    assert meta["environment"]["device"].startswith("cuda")
    model, _ = load_checkpoint(config.out, device="cpu")
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.parametrize("loss", ["ce", "jacobian", "input-grad", "cross-lipschitz"])
def test_every_loss_trains_on_cuda(tiny_config, loss):
    meta = train(tiny_config(loss, epochs=1), device="cuda", progress=False)
    assert meta["status"] == "finished" and meta["test_accuracy"] == meta["test_accuracy"]


@pytest.mark.parametrize(("name", "backend"), [(n, b) for n in ATTACKS.names() for b in attack_backends(n)])
def test_attacks_on_cuda_stay_in_ball(tiny_config, synth_data, name, backend):
    config = tiny_config("ce", epochs=1)
    train(config, device="cpu", progress=False)
    model, _ = load_checkpoint(config.out, device="cuda")
    x, y = synth_data.x_test[:16].cuda(), synth_data.y_test[:16].cuda()
    eps = absolute_radii(x, 0.3, "relative")
    x_adv = build_attack(name, backend, steps=5 if name != "jsma" else 20, source=config.out)(model, x, y, eps)
    assert x_adv.device.type == "cuda" and x_adv.shape == x.shape
    assert (x_adv >= 0).all() and (x_adv <= 1).all()
    assert ((x_adv - x).abs().flatten(1).amax(1) <= eps + 1e-6).all()


def test_recipe_runs_on_cuda(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from robench.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    result = CliRunner().invoke(app, ["run", "tiny.toml", "--device", "cuda", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "results" / "tiny" / "table1.md").exists()


def test_audit_runs_on_cuda(tiny_config, tmp_path):
    config = tiny_config("ce", epochs=1)
    train(config, device="cpu", progress=False)
    cfg = AuditConfig(eps_grid=(0.0, 0.1, 0.3), n_samples=16, strong_steps=5, strong_restarts=2, apgd_steps=5,
                      square_queries=20, transfer_steps=3)
    report = run_audit(config.out, cfg, csv=tmp_path / "a.csv", out_json=tmp_path / "a.json", device="cuda",
                       progress=False)
    assert report["environment"]["device"].startswith("cuda") and len(report["checks"]) == 7
