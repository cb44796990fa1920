"""``worst`` rows: per checkpoint and ε, the per-image worst case over every attack run at that ε.

An image counts as robust at ε only if it survived every attack evaluated on it at ε (same
checkpoint, ε mode, evaluated subset ``n`` and ``attack_seed``, so the same images in the same
order). The sweep keeps a per-image record of every row (``<csv stem>.per_image/``); this
module ANDs those records and writes one ``attack = worst`` row per group into the same CSV,
with ``source`` listing the attacks it combines. A row whose per-image record is missing is left
out of the worst case (and so out of ``source``), never guessed. Worst rows are derived data:
they are recomputed from scratch whenever the CSV changes, and ``worst`` is by construction never
above any single attack's accuracy at the same ε.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from robench.files import load_tensors
from robench.results import per_image_path, read_attack_rows, row_key, write_attack_rows
from robench.version import __version__

WORST = "worst"


def attack_label(row: dict) -> str:
    """A short name for the attack configuration of a row, e.g. ``pgd/native/ce/5x1/independent``."""
    label = f"{row['attack']}/{row['backend']}/{row['attack_loss']}/{row['steps'] or '-'}x{row['restarts'] or 1}"
    label += f"/{row['sweep']}"
    return label + (f"<-{Path(str(row['source'])).name}" if row.get("source") else "")


def group_key(row: dict) -> tuple:
    return (row["checkpoint"], row["eps_mode"], float(row["eps"]), int(row["n"]), str(row["attack_seed"]))


def worst_rows(out: str | Path) -> list[dict]:
    """The worst rows for every group of attack rows in the CSV ``out`` (not written)."""
    out = Path(out)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in read_attack_rows(out):
        if row["attack"] != WORST:
            groups[group_key(row)].append(row)
    result = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[3], k[4], k[2])):
        survived, labels, seconds = None, [], 0.0
        for row in groups[key]:
            path = per_image_path(out, row)
            if not path.exists():
                continue
            correct = load_tensors(path)["correct"].bool()
            if len(correct) != key[3]:
                continue
            survived = correct if survived is None else survived & correct
            labels.append(attack_label(row))
            seconds += float(row["seconds"] or 0.0)
        if survived is None:
            continue
        first = groups[key][0]
        n_correct = int(survived.sum())
        result.append({
            **{c: first[c] for c in ("dataset", "model", "loss", "training", "seed", "checkpoint")},
            "attack": WORST, "backend": "all", "attack_loss": "all", "targeted": False, "eps": key[2],
            "eps_mode": key[1], "steps": None, "step_size": None, "restarts": None, "sweep": WORST, "n": key[3],
            "n_correct": n_correct, "accuracy": n_correct / key[3], "target_success": None,
            "seconds": round(seconds, 6), "attack_seed": first["attack_seed"],
            "robench_version": __version__, "source": " + ".join(sorted(labels))})
    return result


def worst_correct(out: str | Path, rows: list[dict]) -> torch.Tensor | None:
    """The per-image AND of ``correct`` over ``rows`` (same group), or None if no record exists."""
    survived = None
    for row in rows:
        path = per_image_path(Path(out), row)
        if path.exists():
            correct = load_tensors(path)["correct"].bool()
            survived = correct if survived is None else survived & correct
    return survived


def update_worst_rows(out: str | Path) -> list[dict]:
    """Replace the CSV's worst rows by freshly computed ones; rewrites the file only if they changed."""
    out = Path(out)
    if not out.exists():
        return []
    rows = read_attack_rows(out)
    attack_rows = [r for r in rows if r["attack"] != WORST]
    fresh = worst_rows(out)
    new = attack_rows + fresh

    def comparable(r: dict) -> tuple:
        return row_key(r) + (str(r.get("n_correct")), str(r.get("source") or ""))

    if [comparable(r) for r in new] != [comparable(r) for r in rows]:
        write_attack_rows(out, new)
    return fresh
