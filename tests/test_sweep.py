"""Sweeps: tidy CSV rows, resume after a kill, cumulative monotonicity, and the attack CLI's errors."""

import pandas as pd
import pytest
from conftest import error_line
from typer.testing import CliRunner

from robench.cli import app
from robench.errors import RobenchError
from robench.evaluation.store import ResultStore
from robench.evaluation.sweep import SweepSpec, run_sweep
from robench.results import ATTACK_COLUMNS, read_attack_rows, row_key
from robench.training.loop import train

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from robench.training.config import TrainConfig

    out = tmp_path_factory.mktemp("ckpt") / "ce"
    train(TrainConfig(dataset="synthetic", dataset_options={"num_classes": 4, "n_train": 128, "n_test": 40},
                      model="small-cnn", model_options={"hidden": 16}, loss="ce", out=str(out), epochs=3,
                      batch_size=32), device="cpu", progress=False)
    return str(out)


def spec(checkpoint, out, **kw):
    fields = dict(checkpoints=(checkpoint,), attacks=("pgd", "tgsm"), backends=("native",),
                  eps_grid=(0.0, 0.1, 0.3), out=str(out), n_samples=24, steps=None)
    fields.update(kw)
    return SweepSpec(**fields)


def test_rows_are_tidy_and_round_trip(checkpoint, tmp_path):
    out = tmp_path / "attacks.csv"
    written = run_sweep(spec(checkpoint, out), device="cpu", progress=False)
    df = pd.read_csv(out)
    assert list(df.columns) == ATTACK_COLUMNS and len(df) == 6 + 3  # + one worst row per ε
    assert (df.attack == "worst").sum() == 3
    df = df[df.attack != "worst"]
    assert len(df) == len(written) == 6
    assert set(df["attack"]) == {"pgd", "tgsm"} and (df["n"] == 24).all()
    assert (df["accuracy"] == df["n_correct"] / df["n"]).all()
    clean = df[df["eps"] == 0]
    assert clean["accuracy"].nunique() == 1  # ε = 0 is the same clean accuracy for every attack
    assert df[df.attack == "tgsm"]["target_success"].notna().all() and df[df.attack == "pgd"]["target_success"].isna().all()
    assert [row_key(r) for r in read_attack_rows(out) if r["attack"] != "worst"] == [row_key(r) for r in written]
    assert run_sweep(spec(checkpoint, out), device="cpu", progress=False) == []  # all present: skipped


def test_cumulative_is_monotone_and_never_above_independent(checkpoint, tmp_path):
    grid = (0.0, 0.05, 0.1, 0.2, 0.4)
    run_sweep(spec(checkpoint, tmp_path / "c.csv", attacks=("pgd",), eps_grid=grid), device="cpu", progress=False)
    run_sweep(spec(checkpoint, tmp_path / "i.csv", attacks=("pgd",), eps_grid=grid, sweep="independent"),
              device="cpu", progress=False)
    cum = pd.read_csv(tmp_path / "c.csv").query("attack == 'pgd'")["accuracy"].tolist()
    ind = pd.read_csv(tmp_path / "i.csv").query("attack == 'pgd'")["accuracy"].tolist()
    assert cum == sorted(cum, reverse=True)
    assert all(c <= i + 1e-12 for c, i in zip(cum, ind))


def test_resume_after_a_kill_loses_at_most_the_row_in_flight(checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "attacks.csv"
    full = run_sweep(spec(checkpoint, tmp_path / "full.csv"), device="cpu", progress=False)
    real_put, calls = ResultStore.put, []

    def put_then_die(store, row, record):
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_put(store, row, record)
        calls.append(1)

    monkeypatch.setattr(ResultStore, "put", put_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec(checkpoint, out), device="cpu", progress=False)
    monkeypatch.undo()
    assert len([r for r in read_attack_rows(out) if r["attack"] != "worst"]) == 2 and out.read_text().endswith("\n")
    resumed = run_sweep(spec(checkpoint, out), device="cpu", progress=False)
    assert len(resumed) == 4
    got = pd.read_csv(out).drop(columns=["seconds"])
    want = pd.read_csv(tmp_path / "full.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(got, want)
    assert len(full) == 6


def test_force_recomputes_and_replaces_rows(checkpoint, tmp_path):
    out = tmp_path / "attacks.csv"
    run_sweep(spec(checkpoint, out), device="cpu", progress=False)
    again = run_sweep(spec(checkpoint, out), device="cpu", progress=False, force=True)
    assert len(again) == 6 and len([r for r in read_attack_rows(out) if r["attack"] != "worst"]) == 6


def test_foreign_csv_is_refused_and_untouched(checkpoint, tmp_path):
    out = tmp_path / "mine.csv"
    out.write_text("a,b\n1,2\n")
    with pytest.raises(RobenchError, match="not a robench attacks CSV"):
        run_sweep(spec(checkpoint, out), device="cpu", progress=False)
    assert out.read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize("args,match", [
    (["--eps-grid", "0,-0.1"], ">= 0"),
    (["--eps-grid", "0:x:3"], "cannot parse --eps-grid"),
    (["--attack", "fgsm"], "unknown attack 'fgsm'"),
    (["--backend", "foolbox"], "unknown backend"),
    (["--eps-mode", "percent"], "unknown --eps-mode"),
    (["--sweep", "greedy"], "unknown --sweep"),
    (["--attack-loss", "hinge"], "unknown attack loss"),
    (["--n-samples", "0"], "--n-samples"),
    (["--attack", "tgsm", "--restarts", "5"], "tgsm (native) does not take --restarts"),
    (["--attack", "jsma", "--attack-loss", "margin"], "jsma (native) does not take --attack-loss"),
    (["--attack", "pgd,transfer"], "transfer needs a source checkpoint"),
    (["--transfer-from", "runs/x"], "pgd (native) does not take --transfer-from"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--seed", "-1"], "--seed must be an integer"),
])
def test_attack_cli_bad_input(checkpoint, tmp_path, args, match):
    out = tmp_path / "attacks.csv"
    runner.invoke(app, ["attack", "--checkpoint", checkpoint, "--out", str(out), "--eps-grid", "0,0.1",
                        "--n-samples", "8", "--quiet", "--device", "cpu"])
    before = out.read_bytes()
    result = runner.invoke(app, ["attack", "--checkpoint", checkpoint, "--out", str(out), "--n-samples", "8",
                                 "--quiet", "--device", "cpu", *args])
    assert match in error_line(result)
    assert out.read_bytes() == before


def test_attack_cli_checkpoint_without_model_and_unreadable_csv(checkpoint, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    (broken / "model.safetensors").unlink()
    result = runner.invoke(app, ["attack", "--checkpoint", str(broken), "--out", str(tmp_path / "a.csv")])
    assert "no model.safetensors" in error_line(result)
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\xff\xfe\x00binary")
    result = runner.invoke(app, ["attack", "--checkpoint", checkpoint, "--out", str(garbage)])
    assert "cannot read" in error_line(result) or "not a robench attacks CSV" in error_line(result)
    assert garbage.read_bytes() == b"\xff\xfe\x00binary"


def test_attack_cli_writes_rows_and_prints_them(checkpoint, tmp_path):
    out = tmp_path / "attacks.csv"
    result = runner.invoke(app, ["attack", "--checkpoint", checkpoint, "--attack", "pgd,jsma", "--backend", "native",
                                 "--backend", "art", "--eps-grid", "0,0.2", "--n-samples", "8", "--steps", "10",
                                 "--out", str(out), "--quiet", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out).query("attack != 'worst'")
    assert len(df) == 8 and set(df["backend"]) == {"native", "art"} and set(df["steps"]) == {10}
    assert "accuracy" in result.output
