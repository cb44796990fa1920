"""robench run: a tiny synthetic recipe end to end, resume after a kill, and the CLI."""

import json

import pytest
from typer.testing import CliRunner

import robench.pipeline.local_executor as runner
from robench.cli import app
from robench.evaluation.store import ResultStore
from robench.results import read_attack_rows, row_key
from tests.conftest import error_line

TINY = """\
name = "tiny"
scale = "test scale: synthetic 8x8, 2 epochs"
[train]
datasets = ["synthetic"]
models = ["small-cnn"]
losses = ["ce", "gccs"]
modes = ["regular", "finetune"]
epochs = 2
finetune_epochs = 1
batch_size = 32
[train.dataset_options]
num_classes = 4
image_size = 8
n_train = 128
n_test = 64
[train.model_options]
hidden = 16
[[attack]]
attack = "pgd"
eps = [0, 0.1, 0.3]
sweep = "independent"
[[attack]]
attack = "tgsm"
eps = [0, 0.3]
[latent]
eps = 0.1
classes = [0, 1, 3]
n_samples = 20
"""


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def run(path, *args):
    return CliRunner().invoke(app, ["run", str(path), "--device", "cpu", "--quiet", *args])


def snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_run_end_to_end_then_nothing_to_do(recipe, tmp_path):
    result = run(recipe)
    assert result.exit_code == 0, result.output
    out = tmp_path / "results" / "tiny"
    rows = [r for r in read_attack_rows(out / "attacks.csv") if r["attack"] != "worst"]
    assert len(rows) == 3 * (3 + 2)  # 3 checkpoints x (pgd 3 eps + tgsm 2 eps)
    assert {r["training"] for r in rows} == {"regular", "finetune"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scale"].startswith("test scale") and len(manifest["runs"]) == 3
    assert all(len(r["weights_sha256"]) == 64 for r in manifest["runs"])
    assert manifest["environment"]["device"] == "cpu" and manifest["recipe"]["train"]["epochs"] == 2
    finetune = next(r for r in manifest["runs"] if "finetune" in r["run"])
    assert finetune["parent"]["path"].endswith("synthetic-small-cnn-ce-regular-s0")
    assert len(list((out / "latent").glob("*.safetensors"))) == 3
    assert (out / "table1.csv").exists() and (out / "table1.md").exists() and (out / "table1.tex").exists()
    before = snapshot(out)
    again = run(recipe)
    assert again.exit_code == 0, again.output
    assert snapshot(out) == before  # nothing redone, manifest untouched, report byte-identical


def test_killed_run_resumes_without_redoing_or_duplicating(recipe, tmp_path, monkeypatch):
    calls = {"put": 0}
    original = ResultStore.put

    def dying_put(store, row, record):
        calls["put"] += 1
        if calls["put"] == 4:
            raise KeyboardInterrupt
        original(store, row, record)

    monkeypatch.setattr(ResultStore, "put", dying_put)
    killed = run(recipe)
    assert killed.exit_code == 130 and "resume" in killed.output
    csv = tmp_path / "results" / "tiny" / "attacks.csv"
    assert len([r for r in read_attack_rows(csv) if r["attack"] != "worst"]) == 3
    monkeypatch.setattr(ResultStore, "put", original)
    trained = []
    real_train = runner.train
    monkeypatch.setattr(runner, "train", lambda config, **kw: trained.append(config) or real_train(config, **kw))
    resumed = run(recipe)
    assert resumed.exit_code == 0, resumed.output
    assert trained == []  # all three runs had finished before the kill
    rows = [r for r in read_attack_rows(csv) if r["attack"] != "worst"]
    assert len(rows) == 15 and len({row_key(r) for r in rows}) == 15


def test_dry_run_writes_nothing(recipe, tmp_path):
    result = run(recipe, "--dry-run")
    assert result.exit_code == 0 and "to do" in result.output and "synthetic-small-cnn-gccs-finetune-s0" in result.output
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()


def test_bad_recipe_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("epochs = 2", "epochs = -1"))
    error_line(run(bad))
    error_line(run(tmp_path / "missing.toml"))


AUDIT = """
[audit]
n_samples = 32
strong_steps = 4
strong_restarts = 2
apgd_steps = 4
square_queries = 20
transfer_steps = 3
"""


def test_audit_table_audits_every_checkpoint_reusing_protocol_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.replace('eps = [0, 0.1, 0.3]\nsweep = "independent"',
                                 'eps = [0, 0.1, 0.3]\nsweep = "independent"\nn_samples = 32') + AUDIT)
    dry = run(path, "--dry-run")
    assert "audits: 3 (3 to do), 32 images, relative eps check 0.3" in dry.output
    result = run(path)
    assert result.exit_code == 0, result.output
    out = tmp_path / "results" / "tiny"
    summary = result.output[result.output.index("tiny: done in"):]  # the closing summary
    assert "trained 3 run(s): synthetic-small-cnn-ce-regular-s0" in summary
    assert f"new row(s) in {out.relative_to(tmp_path) / 'attacks.csv'}" in summary
    assert "audited: " in summary and summary.count("synthetic-small-cnn-") >= 6
    assert f"results: {out.relative_to(tmp_path)}/" in summary and "checkpoints: runs/tiny/" in summary
    reports = {p.parent.name: json.loads(p.read_text()) for p in out.glob("runs/*/audit.json")}
    assert len(reports) == 3
    gccs = reports["synthetic-small-cnn-gccs-regular-s0"]
    assert gccs["transfer_source"].endswith("synthetic-small-cnn-ce-regular-s0") and gccs["eps_check"] == 0.3
    assert reports["synthetic-small-cnn-ce-regular-s0"]["transfer_source"] is None
    rows = read_attack_rows(out / "attacks.csv")
    protocol = [r for r in rows if r["attack"] == "pgd" and r["steps"] == "5" and r["restarts"] == "1"
                and r["attack_loss"] == "ce" and r["eps_mode"] == "relative"]
    assert len(protocol) == 3 * 3 and len({row_key(r) for r in rows}) == len(rows)  # reused, not duplicated
    worst = [r for r in rows if r["attack"] == "worst" and r["n"] == "32" and float(r["eps"]) == 0.3]
    assert len(worst) == 3 and all("square" in r["source"] and "apgd" in r["source"] for r in worst)
    before = snapshot(out)
    assert "nothing to do" in run(path).output
    assert snapshot(out) == before


def test_run_refuses_torchrun(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    (tmp_path / "tiny.toml").write_text(TINY)
    assert "cannot itself run under torchrun" in error_line(run(tmp_path / "tiny.toml"))
    assert not (tmp_path / "results").exists()
