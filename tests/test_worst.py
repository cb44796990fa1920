"""``worst`` rows: the per-image worst case over attacks, never above any single attack; legacy CSVs."""

import hashlib
import shutil
import sqlite3

import pandas as pd
import pytest
import torch

from robench.evaluation.store import ResultStore, slot_of
from robench.evaluation.sweep import SweepSpec, run_sweep
from robench.evaluation.worst import WORST, worst_rows
from robench.files import save_tensors
from robench.results import ATTACK_COLUMNS, LEGACY_HEADERS, read_attack_rows, row_key
from robench.training.config import TrainConfig
from robench.training.loop import train


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One checkpoint attacked by pgd (ce, margin) and tgsm at three ε, all into one CSV."""
    root = tmp_path_factory.mktemp("worst")
    ckpt = root / "ce"
    train(TrainConfig(dataset="synthetic", dataset_options={"num_classes": 4, "n_train": 128, "n_test": 40},
                      model="small-cnn", model_options={"hidden": 16}, loss="ce", out=str(ckpt), epochs=3,
                      batch_size=32), device="cpu", progress=False)
    out = root / "attacks.csv"
    common = dict(checkpoints=(str(ckpt),), backends=("native",), eps_grid=(0.0, 0.1, 0.3), out=str(out),
                  n_samples=32, sweep="independent")
    run_sweep(SweepSpec(attacks=("pgd", "tgsm"), **common), device="cpu", progress=False)
    run_sweep(SweepSpec(attacks=("pgd",), attack_loss="margin", steps=3, **common), device="cpu", progress=False)
    return out


def copy_results(csv, folder):
    shutil.copy(csv, folder / csv.name)
    shutil.copy(ResultStore(csv).path, folder / ResultStore(csv).path.name)
    return folder / csv.name


def test_worst_is_never_above_any_attack_and_is_the_per_image_and(swept):
    df = pd.read_csv(swept)
    worst = df[df.attack == WORST].set_index("eps")
    attacks = df[df.attack != WORST]
    assert len(worst) == 3 and len(attacks) == 9
    for eps, group in attacks.groupby("eps"):
        assert worst.loc[eps, "accuracy"] <= group["accuracy"].min() + 1e-12
        assert worst.loc[eps, "source"].count(" + ") == len(group) - 1
    store = ResultStore(swept)
    rows = [r for r in read_attack_rows(swept) if r["attack"] != WORST and float(r["eps"]) == 0.3]
    survived = None
    for row in rows:
        correct = store.record(row)[0]
        survived = correct if survived is None else survived & correct
    assert worst.loc[0.3, "n_correct"] == int(survived.sum())
    assert worst.loc[0.0, "accuracy"] == attacks[attacks.eps == 0]["accuracy"].iloc[0]  # ε = 0: clean
    assert (worst["model_sha256"] == attacks["model_sha256"].iloc[0]).all()


def test_missing_per_image_record_is_left_out_not_guessed(swept, tmp_path):
    out = copy_results(swept, tmp_path)
    store = ResultStore(out)
    tgsm = next(r for r in store.rows() if r["attack"] == "tgsm" and float(r["eps"]) == 0.3)
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE rows SET n = NULL, correct = NULL, target_hit = NULL WHERE slot = ?", (slot_of(tgsm),))
    records = {slot_of(row): record for row, record in store.items()}
    fresh = {r["eps"]: r for r in worst_rows(store.rows(), lambda r: records[slot_of(r)] and records[slot_of(r)][0])}
    assert "tgsm" not in fresh[0.3]["source"] and "tgsm" in fresh[0.1]["source"]


def test_rewriting_is_idempotent_and_keeps_attack_rows(swept, tmp_path):
    out = copy_results(swept, tmp_path)
    before = out.read_bytes()
    ResultStore(out).put_many([])
    assert out.read_bytes() == before


def old_row_key_digest(row: dict) -> str:
    """robench 0.1's per-image file name: sha1 of its row key (numbers as repr(float)), written out again here."""
    key = []
    for column in ["checkpoint", "attack", "backend", "attack_loss", "eps", "eps_mode", "steps", "step_size",
                   "restarts", "sweep", "n", "attack_seed"]:
        value = row[column]
        try:
            value = repr(float(value)) if value not in ("", "true", "false") else value
        except ValueError:
            pass
        key.append(value)
    return hashlib.sha1("\x1f".join(key + ([row["source"]] if row["source"] else [])).encode()).hexdigest()[:20]


@pytest.mark.parametrize("header", LEGACY_HEADERS, ids=["0.1", "with-source", "with-identities"])
def test_legacy_csv_is_taken_over_with_its_records_and_stays_unbound(swept, tmp_path, header):
    rows = [r for r in read_attack_rows(swept) if r["attack"] != WORST]
    legacy = tmp_path / "old.csv"
    rows = [dict(r, source="") for r in rows]
    legacy.write_text(",".join(header) + "\n" + "".join(",".join(r[c] for c in header) + "\n" for r in rows))
    old = read_attack_rows(legacy)
    assert [r["source"] for r in old] == [""] * len(rows) and {r["norm"] for r in old} == {"Linf"}
    assert any(r["model_sha256"] for r in old) == ("model_sha256" in header)
    assert [row_key(r) for r in old] == [row_key(r) for r in rows]
    flags = torch.tensor([True, False] * 16)
    save_tensors(tmp_path / "old.per_image" / f"{old_row_key_digest(old[0])}.safetensors",
                 {"correct": flags.to(torch.uint8), "target_hit": (~flags).to(torch.uint8)})
    ResultStore(legacy).adopt()  # rewriting upgrades the header; the old record comes along
    assert legacy.read_text().splitlines()[0] == ",".join(ATTACK_COLUMNS)
    assert torch.equal(ResultStore(legacy).record(old[0])[0], flags)
    assert sum(r["attack"] == WORST for r in read_attack_rows(legacy)) == 1  # only old[0]'s ε has a record
