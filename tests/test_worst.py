"""``worst`` rows: the per-image worst case over attacks, never above any single attack; legacy CSVs."""

import pandas as pd
import pytest

from robench.evaluation.sweep import SweepSpec, run_sweep
from robench.evaluation.worst import WORST, update_worst_rows, worst_rows
from robench.files import load_tensors
from robench.results import ATTACK_COLUMNS, LEGACY_COLUMNS, per_image_path, read_attack_rows, row_key, write_attack_rows
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


def test_worst_is_never_above_any_attack_and_is_the_per_image_and(swept):
    df = pd.read_csv(swept)
    worst = df[df.attack == WORST].set_index("eps")
    attacks = df[df.attack != WORST]
    assert len(worst) == 3 and len(attacks) == 9
    for eps, group in attacks.groupby("eps"):
        assert worst.loc[eps, "accuracy"] <= group["accuracy"].min() + 1e-12
        assert worst.loc[eps, "source"].count(" + ") == len(group) - 1
    rows = [r for r in read_attack_rows(swept) if r["attack"] != WORST and float(r["eps"]) == 0.3]
    survived = None
    for row in rows:
        correct = load_tensors(per_image_path(swept, row))["correct"].bool()
        survived = correct if survived is None else survived & correct
    assert worst.loc[0.3, "n_correct"] == int(survived.sum())
    assert worst.loc[0.0, "accuracy"] == attacks[attacks.eps == 0]["accuracy"].iloc[0]  # ε = 0: clean


def test_missing_per_image_record_is_left_out_not_guessed(swept, tmp_path):
    import shutil

    out = tmp_path / "attacks.csv"
    shutil.copy(swept, out)
    shutil.copytree(swept.with_name("attacks.per_image"), tmp_path / "attacks.per_image")
    tgsm = next(r for r in read_attack_rows(out) if r["attack"] == "tgsm" and float(r["eps"]) == 0.3)
    per_image_path(out, tgsm).unlink()
    fresh = {r["eps"]: r for r in worst_rows(out)}
    assert "tgsm" not in fresh[0.3]["source"] and "tgsm" in fresh[0.1]["source"]


def test_update_is_idempotent_and_keeps_attack_rows(swept):
    before = swept.read_bytes()
    update_worst_rows(swept)
    assert swept.read_bytes() == before


def test_legacy_header_reads_with_empty_source_and_same_keys(swept, tmp_path):
    rows = [r for r in read_attack_rows(swept) if r["attack"] != WORST]
    legacy = tmp_path / "old.csv"
    legacy.write_text(",".join(LEGACY_COLUMNS) + "\n" + "".join(
        ",".join(r[c] for c in LEGACY_COLUMNS) + "\n" for r in rows))
    old = read_attack_rows(legacy)
    assert [r["source"] for r in old] == [""] * len(rows)
    assert [row_key(r) for r in old] == [row_key(r) for r in rows]
    write_attack_rows(legacy, old)  # rewriting upgrades the header
    assert legacy.read_text().splitlines()[0] == ",".join(ATTACK_COLUMNS)
