"""The result store: rows bound to the weights and images they measured, concurrent writers, damaged files.

Scenarios a user meets: a checkpoint retrained at the same path (its rows go stale and are
recomputed), weights swapped by hand (refused), four ``robench attack`` processes writing one CSV
at once (no row lost or doubled, worst rows over all of them), and a damaged CSV (refused, left
byte-identical).
"""

import hashlib
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from robench.cli import app
from robench.evaluation.latent import snapshot_model_sha256
from robench.evaluation import store as store_module
from robench.evaluation.store import ResultStore
from robench.files import file_sha256
from robench.results import read_attack_rows
from robench.training import loop
from robench.training.loop import train
from tests.conftest import error_line
from tests.test_runner import TINY

runner = CliRunner()
EPS = ("0", "0.05", "0.1", "0.2")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from robench.training.config import TrainConfig

    out = tmp_path_factory.mktemp("store") / "ce"
    train(TrainConfig(dataset="synthetic", dataset_options={"num_classes": 4, "n_train": 128, "n_test": 40},
                      model="small-cnn", model_options={"hidden": 16}, loss="ce", out=str(out), epochs=2,
                      batch_size=32), device="cpu", progress=False)
    return out


def attack(*args):
    return runner.invoke(app, ["attack", "--device", "cpu", "--quiet", "--n-samples", "24", *map(str, args)])


def hashes(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rows_name_the_weights_and_images_they_measured(checkpoint, tmp_path):
    out = tmp_path / "a.csv"
    assert attack("--checkpoint", checkpoint, "--out", out, "--eps-grid", "0,0.1").exit_code == 0
    rows = read_attack_rows(out)
    assert {r["model_sha256"] for r in rows} == {file_sha256(checkpoint / "model.safetensors")}
    assert len({r["images_sha256"] for r in rows}) == 1 and len(rows[0]["images_sha256"]) == 64
    assert ResultStore(out).path.is_file() and len(ResultStore(out).rows()) == 2


def test_retrained_checkpoint_makes_its_rows_stale_and_they_are_recomputed(checkpoint, tmp_path):
    ck, out = tmp_path / "ck", tmp_path / "a.csv"
    shutil.copytree(checkpoint, ck)
    first = attack("--checkpoint", ck, "--out", out, "--eps-grid", "0,0.1")
    assert first.exit_code == 0 and "2 new row(s)" in first.output
    old = {r["eps"]: r for r in read_attack_rows(out) if r["attack"] == "pgd"}
    meta = json.loads((ck / "run.json").read_text())
    retrain = runner.invoke(app, ["train", "--dataset", "synthetic", "--model", "small-cnn", "--loss", "ce",
                                  "--epochs", "3", "--batch-size", "32", "--out", str(ck), "--force", "--quiet",
                                  "--device", "cpu", "--model-option", "hidden=16", *sum(
                                      (["--dataset-option", f"{k}={v}"] for k, v in meta["dataset_options"].items()),
                                      [])])
    assert retrain.exit_code == 0, retrain.output
    again = attack("--checkpoint", ck, "--out", out, "--eps-grid", "0,0.1")
    assert again.exit_code == 0 and "2 new row(s) (2 of them replacing stale rows" in again.output
    new = {r["eps"]: r for r in read_attack_rows(out) if r["attack"] == "pgd"}
    assert {r["model_sha256"] for r in new.values()} == {file_sha256(ck / "model.safetensors")}
    assert new["0.0"]["model_sha256"] != old["0.0"]["model_sha256"] and len(ResultStore(out).rows()) == 2
    assert "0 new row(s)" in attack("--checkpoint", ck, "--out", out, "--eps-grid", "0,0.1").output


def test_swapped_weights_are_refused_unless_trusted(checkpoint, tmp_path, tiny_config):
    ck = tmp_path / "ck"
    shutil.copytree(checkpoint, ck)
    other = train(tiny_config(out="other", seed=1, dataset_options={"num_classes": 4, "n_train": 128, "n_test": 40}),
                  device="cpu", progress=False)
    shutil.copy(f"{other['config']['out']}/model.safetensors", ck / "model.safetensors")
    before = hashes(tmp_path)
    assert "is not the file its run.json records" in error_line(attack("--checkpoint", ck, "--out", tmp_path / "a.csv"))
    assert hashes(tmp_path) == before
    trusted = attack("--checkpoint", ck, "--out", tmp_path / "a.csv", "--trust-weights", "--eps-grid", "0")
    assert trusted.exit_code == 0, trusted.output
    assert read_attack_rows(tmp_path / "a.csv")[0]["model_sha256"] == file_sha256(ck / "model.safetensors")


CONCURRENT = [["--attack", "pgd"], ["--attack", "tgsm"], ["--attack", "pgd", "--attack-loss", "margin"],
              ["--attack", "pgd", "--steps", "3", "--sweep", "independent"]]


@pytest.mark.parametrize("trial", range(5))
def test_four_concurrent_attack_processes_lose_and_double_nothing(checkpoint, tmp_path, trial):
    out = tmp_path / "a.csv"
    eps = ",".join(EPS[:3] if trial == 0 else EPS[:2])
    procs = [subprocess.Popen([sys.executable, "-m", "robench", "attack", "--checkpoint", str(checkpoint), "--out",
                               str(out), "--eps-grid", eps, "--n-samples", "24", "--device", "cpu", "--quiet", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for args in CONCURRENT]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    failed = [f"{args}: exit {p.returncode}: {text[-1500:]}" for p, args, text in zip(procs, CONCURRENT, outputs)
              if p.returncode != 0]
    assert not failed, "\n".join(failed)
    df = pd.read_csv(out)
    attacks, worst = df[df.attack != "worst"], df[df.attack == "worst"]
    n_eps = len(eps.split(","))
    assert len(attacks) == 4 * n_eps and not attacks.duplicated(["attack", "attack_loss", "steps", "eps"]).any()
    assert len(worst) == n_eps and (worst["source"].str.count(r" \+ ") == 3).all()  # every attack in every worst row
    for e, group in attacks.groupby("eps"):
        assert worst.set_index("eps").loc[e, "accuracy"] <= group["accuracy"].min() + 1e-12


def test_a_check_never_reads_the_csv_between_a_writers_commit_and_its_export(checkpoint, tmp_path, monkeypatch):
    """The race behind a rare failure of the test above: a check read the store's last export, another process
    then wrote a row, and the check compared the new CSV with the old export and refused a sound file. Here a
    writer thread is let run exactly inside a check's window; the check must look again and pass."""
    out = tmp_path / "a.csv"
    assert attack("--checkpoint", checkpoint, "--out", out, "--eps-grid", "0,0.1").exit_code == 0
    store = ResultStore(out)
    row = dict(read_attack_rows(out)[0], eps="0.05")
    reader, read_bytes, writers = threading.get_ident(), Path.read_bytes, []

    def read_bytes_after_a_write(path):
        if threading.get_ident() == reader and path == out and not writers:
            writers.append(threading.Thread(target=ResultStore(out).put, args=(row, None)))
            writers[0].start()
            writers[0].join(timeout=30)  # the other process's whole write lands here
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes_after_a_write)
    store.check()
    monkeypatch.undo()
    assert writers and not writers[0].is_alive() and {r["eps"] for r in store.rows()} == {"0.0", "0.05", "0.1"}
    store.check()


def test_a_csv_taken_over_by_a_new_store_stays_sound_for_a_check_during_the_first_write(checkpoint, tmp_path,
                                                                                       monkeypatch):
    """A CSV without a store (an older robench's): between the first writer's commit and its export the CSV on disk
    is the one the store was built from, and a check then must accept it."""
    out = tmp_path / "a.csv"
    assert attack("--checkpoint", checkpoint, "--out", out, "--eps-grid", "0,0.1").exit_code == 0
    ResultStore(out).path.unlink()
    row = dict(read_attack_rows(out)[0], eps="0.05")
    committed, checked = threading.Event(), threading.Event()
    real_write = store_module.atomic_write_bytes

    def write_after_a_check(path, data):
        committed.set()
        checked.wait(timeout=30)
        real_write(path, data)

    monkeypatch.setattr(store_module, "atomic_write_bytes", write_after_a_check)
    writer = threading.Thread(target=ResultStore(out).put, args=(row, None))
    writer.start()
    assert committed.wait(timeout=30)
    try:
        ResultStore(out).check()
    finally:
        checked.set()
        writer.join(timeout=30)
    assert {r["eps"] for r in ResultStore(out).rows()} == {"0.0", "0.05", "0.1"}


DAMAGE = {
    "cut line": lambda text: text[:-7],
    "extra column": lambda text: "\n".join(line + (",x" if i == 1 else "") for i, line in enumerate(text.split("\n"))),
    "text in a number column": lambda text: text.replace(",24,", ",twenty-four,", 1),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
@pytest.mark.parametrize("with_store", [True, False], ids=["store", "csv-only"])
def test_damaged_csv_is_refused_and_left_byte_identical(checkpoint, tmp_path, damage, with_store):
    out = tmp_path / "a.csv"
    assert attack("--checkpoint", checkpoint, "--out", out, "--eps-grid", "0,0.1").exit_code == 0
    out.write_text(DAMAGE[damage](out.read_text()))
    if not with_store:
        ResultStore(out).path.unlink()
    before = hashes(tmp_path)
    line = error_line(attack("--checkpoint", checkpoint, "--out", out, "--eps-grid", "0,0.2"))
    assert str(out) in line and ("line" in line or "differs" in line)
    assert hashes(tmp_path) == before
    report = runner.invoke(app, ["report", str(tmp_path)])
    assert report.exit_code == 2 and hashes(tmp_path) == before


def test_a_csv_edited_by_hand_is_not_overwritten(checkpoint, tmp_path):
    out = tmp_path / "a.csv"
    assert attack("--checkpoint", checkpoint, "--out", out, "--eps-grid", "0,0.1").exit_code == 0
    out.write_text(out.read_text().replace(",pgd,native,", ",pgd,native,", 1).replace("0.1,relative", "0.10,relative"))
    before = out.read_bytes()
    assert "differs from what robench last wrote" in error_line(attack("--checkpoint", checkpoint, "--out", out))
    assert out.read_bytes() == before


def test_stale_results_are_never_reported(tmp_path, monkeypatch):
    """The fresh-clone case: a results directory whose checkpoints were retrained gets every row, audit-free
    snapshot and table redone for the new weights, and the report describes only those."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    run = lambda: runner.invoke(app, ["run", "tiny.toml", "--device", "cpu", "--quiet"])  # noqa: E731
    assert run().exit_code == 0
    results = tmp_path / "results" / "tiny"
    shutil.rmtree(tmp_path / "runs")  # a fresh clone: checkpoints are not in git
    for path in (results / "runs").glob("*/run.json"):  # what a clone has: the copies of the old run.json
        assert json.loads(path.read_text())["weights_sha256"]
    real_seed = loop.epoch_seed  # this machine trains other weights than the one that wrote the results
    monkeypatch.setattr(loop, "epoch_seed", lambda seed, epoch: real_seed(seed, epoch) + 1)
    again = run()
    assert again.exit_code == 0, again.output
    weights = {p.parent.name: json.loads(p.read_text())["weights_sha256"] for p in (results / "runs").glob("*/run.json")}
    rows = read_attack_rows(results / "attacks.csv")
    assert rows and all(r["model_sha256"] == weights[r["checkpoint"].rsplit("/", 1)[-1]] for r in rows)
    assert {snapshot_model_sha256(p) for p in (results / "latent").glob("*")} == set(weights.values())
    assert "Not shown" not in (results / "table1.md").read_text()


def test_a_shrunk_recipe_sets_aside_what_it_no_longer_has(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    assert runner.invoke(app, ["run", "tiny.toml", "--device", "cpu", "--quiet"]).exit_code == 0
    results = tmp_path / "results" / "tiny"
    gone = "synthetic-small-cnn-gccs-finetune-s0"
    (tmp_path / "tiny.toml").write_text(TINY.replace('modes = ["regular", "finetune"]', 'modes = ["regular"]'))
    result = runner.invoke(app, ["run", "tiny.toml", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0 and "set aside 2 file(s)" in result.output
    assert not (results / "runs" / gone).exists() and (results / "stale" / "runs" / gone / "run.json").exists()
    assert (results / "stale" / "latent" / f"{gone}.safetensors").exists()
    table = (results / "table1.md").read_text()
    assert "GCCS - fine-tuning" not in table and "Not shown: 8 attack rows of checkpoints that are not runs" in table
