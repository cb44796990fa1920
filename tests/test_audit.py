"""``robench audit``: a gradient-masking model is flagged, the plain model is not; worst <= every attack;
audit.json, resume, the CLI's table and errors, and auditing from a recipe."""

import json

import pandas as pd
import pytest
import torch
from conftest import error_line
from torch import nn
from typer.testing import CliRunner

import robench.evaluation.audit as audit_module
import robench.evaluation.sweep as sweep_module
from robench.cli import app
from robench.evaluation.audit import AuditConfig, find_transfer_source, run_audit
from robench.models.checkpoints import load_checkpoint
from robench.training.config import TrainConfig
from robench.training.loop import train

runner = CliRunner(env={"COLUMNS": "200"})
DATA = {"num_classes": 4, "image_size": 8, "n_train": 256, "n_test": 48}
SMALL = AuditConfig(eps_grid=(0.0, 0.1, 0.2, 0.3), n_samples=40, strong_steps=10, strong_restarts=2,
                    apgd_steps=10, square_queries=100, transfer_steps=5)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A cross-entropy run and a GCCS run of the same data and model, side by side."""
    root = tmp_path_factory.mktemp("audit")
    for loss in ("ce", "gccs"):
        train(TrainConfig(dataset="synthetic", dataset_options=DATA, model="small-cnn", model_options={"hidden": 16},
                          loss=loss, out=str(root / loss), epochs=4, batch_size=32,
                          lr=0.01 if loss == "ce" else 1e-3), device="cpu", progress=False)
    return root


class Saturated(nn.Module):
    """The checkpoint's model with logits times 10^4: softmax saturates, CE gradients vanish."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.num_classes = model, model.num_classes

    def forward(self, x):
        return self.inner(x) * 1e4


def audit(runs, name, tmp_path, **kw):
    return run_audit(runs / name, kw.pop("cfg", SMALL), csv=tmp_path / "audit.csv", out_json=tmp_path / "audit.json",
                     device="cpu", progress=False, **kw)


def by_id(report):
    return {c["id"]: c for c in report["checks"]}


def test_plain_model_is_not_flagged_and_worst_is_below_every_attack(runs, tmp_path):
    report = audit(runs, "ce", tmp_path)
    checks = by_id(report)
    assert checks[4]["status"] != "fail" and checks[6]["status"] == "pass" and checks[7]["status"] == "pass"
    assert "transfer = white-box PGD)" in checks[5]["detail"]  # ce is its own transfer source
    assert report["worst"] <= min(report["attacks_at_eps_check"].values()) + 1e-12
    df = pd.read_csv(tmp_path / "audit.csv")
    worst = df[df.attack == "worst"].set_index("eps")["accuracy"]
    for (eps, mode), group in df[df.attack != "worst"].groupby(["eps", "eps_mode"]):
        if mode == "relative":
            assert worst[eps] <= group["accuracy"].min() + 1e-12
    assert json.loads((tmp_path / "audit.json").read_text())["verdict"] == report["verdict"]


def test_saturated_softmax_is_flagged(runs, tmp_path, monkeypatch):
    def masked(path, device="cpu", **kwargs):
        model, meta = load_checkpoint(path, device, **kwargs)
        return Saturated(model).eval(), meta

    monkeypatch.setattr(audit_module, "load_checkpoint", masked)
    monkeypatch.setattr(sweep_module, "load_checkpoint", masked)
    report = audit(runs, "ce", tmp_path)
    checks = by_id(report)
    assert checks[6]["status"] == "fail" and checks[6]["measured"] > 50  # most CE gradients are exactly zero
    assert checks[4]["status"] in ("warn", "fail") and report["verdict"] == "fail"


def test_transfer_source_is_found_beside_the_checkpoint_and_resume_redoes_nothing(runs, tmp_path, monkeypatch):
    source, why = find_transfer_source(runs / "gccs", load_checkpoint(runs / "gccs")[1])
    assert source == str(runs / "ce"), why
    first = audit(runs, "gccs", tmp_path)
    assert "transfer" in {p["role"] for p in first["pruned"]} and first["transfer_source"] == str(runs / "ce")
    calls = []
    monkeypatch.setattr(sweep_module, "attack_images", lambda *a, **k: calls.append(1))
    again = audit(runs, "gccs", tmp_path)
    assert calls == [] and again["checks"] == first["checks"]


@pytest.mark.parametrize("name", ["ce", "gccs"])
def test_pruned_battery_gives_the_full_batterys_verdicts_on_fewer_images(runs, tmp_path, name):
    """The expensive attacks see only the images still standing, and the seven checks judge the same."""
    from dataclasses import replace

    pruned = audit(runs, name, tmp_path / "pruned")
    full = audit(runs, name, tmp_path / "full", cfg=replace(SMALL, prune=False))
    assert [c["status"] for c in pruned["checks"]] == [c["status"] for c in full["checks"]]
    assert pruned["verdict"] == full["verdict"] and pruned["worst"] == pytest.approx(full["worst"], abs=2 / 40)
    attacked = {p["role"]: p["images_attacked"] for p in pruned["pruned"]}
    assert all(attacked[role] <= 40 for role in attacked) and attacked["square"] < 40
    assert all(p["images_attacked"] == 40 for p in full["pruned"])
    df = pd.read_csv(tmp_path / "pruned" / "audit.csv")
    assert (df[df.given.notna()].attack.isin(["pgd", "apgd", "apgd-t", "fab", "square", "transfer"])).all()


def test_cli_prints_the_verdict_table(runs, tmp_path):
    result = runner.invoke(app, ["audit", str(runs / "gccs"), "--out", str(tmp_path), "--n-samples", "24",
                                 "--eps-grid", "0,0.2", "--strong-steps", "5", "--strong-restarts", "1",
                                 "--apgd-steps", "5", "--square-queries", "20", "--quiet", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for word in ("monotone", "zero-gradient", "deterministic", "worst case", "verdict"):
        assert word in result.output
    assert (tmp_path / "audit.json").exists() and (tmp_path / "audit.csv").exists()
    verdict = json.loads((tmp_path / "audit.json").read_text())["verdict"]
    strict = runner.invoke(app, ["audit", str(runs / "gccs"), "--out", str(tmp_path), "--n-samples", "24",
                                 "--eps-grid", "0,0.2", "--strong-steps", "5", "--strong-restarts", "1",
                                 "--apgd-steps", "5", "--square-queries", "20", "--quiet", "--device", "cpu",
                                 "--strict"])
    assert strict.exit_code == (1 if verdict == "fail" else 0), strict.output


@pytest.mark.parametrize("args,match", [
    (["--eps-grid", "0"], "positive checking eps"),
    (["--eps-mode", "percent"], "unknown --eps-mode"),
    (["--strong-steps", "0"], "strong-steps must be at least 1"),
])
def test_cli_bad_input(runs, tmp_path, args, match):
    result = runner.invoke(app, ["audit", str(runs / "ce"), "--out", str(tmp_path), "--quiet", *args])
    assert match in error_line(result)
    assert not (tmp_path / "audit.json").exists()


def test_cli_missing_checkpoint(tmp_path):
    result = runner.invoke(app, ["audit", str(tmp_path / "nope")])
    assert "not found" in error_line(result)


def test_gradients_are_unchanged_by_the_check(runs):
    from robench.evaluation.audit_checks import zero_gradient_fraction

    model, _ = load_checkpoint(runs / "ce")
    x = torch.rand(8, 1, 8, 8)
    fraction, zero, nonfinite = zero_gradient_fraction(model, x, torch.zeros(8, dtype=torch.long), 4,
                                                       torch.device("cpu"))
    assert fraction == 0 and zero == nonfinite == 0
    assert all(p.grad is None for p in model.parameters())
