"""``worst`` rows: per model and ε, the per-image worst case over every attack run at that ε.

An image counts as robust at ε only if it survived every attack evaluated on it at ε: the same
checkpoint with the same weights (``model_sha256``) on the same images (``images_sha256``, ``n``,
``attack_seed``) in the same ε mode. The store keeps a per-image record of every row; this module
ANDs those records into one ``attack = worst`` row per group, with ``source`` listing the attacks
it combines. A row without a per-image record is left out of the worst case (and so out of
``source``), never guessed. Worst rows are derived data: the store recomputes them from scratch
whenever it writes the CSV, and ``worst`` is by construction never above any single attack's
accuracy at the same ε.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

from robench.version import __version__

WORST = "worst"


def attack_label(row: dict) -> str:
    """A short name for the attack configuration of a row, e.g. ``pgd/native/ce/5x1/independent``
    (``/survivors`` when it attacked only the images earlier rows left)."""
    label = f"{row['attack']}/{row['backend']}/{row['attack_loss']}/{row['steps'] or '-'}x{row['restarts'] or 1}"
    label += f"/{row['sweep']}" + ("/L2" if row.get("norm") == "L2" else "") + ("/survivors" if row.get("given") else "")
    return label + (f"<-{Path(str(row['source'])).name}" if row.get("source") else "")


def group_key(row: dict) -> tuple:
    """The rows a worst row combines: same checkpoint, weights, images, norm, ε mode, ε and subset."""
    return (row["checkpoint"], row.get("model_sha256") or "", row.get("images_sha256") or "",
            row.get("norm") or "Linf", row["eps_mode"], float(row["eps"]), int(row["n"]), str(row["attack_seed"]))


def worst_rows(rows: list[dict], record: Callable[[dict], torch.Tensor | None]) -> list[dict]:
    """The worst row of every group of attack ``rows``; ``record(row)`` is its per-image ``correct`` or None."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        if row["attack"] != WORST:
            groups[group_key(row)].append(row)
    result = []
    for key in sorted(groups, key=lambda k: (k[:5], k[6], k[7], k[5])):
        checkpoint, model_sha, images_sha, norm, eps_mode, eps, n, attack_seed = key
        survived, labels, seconds = None, [], 0.0
        for row in groups[key]:
            correct = record(row)
            if correct is None or len(correct) != n:
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
            "attack": WORST, "backend": "all", "attack_loss": "all", "targeted": False, "eps": eps,
            "eps_mode": eps_mode, "norm": norm, "steps": None, "step_size": None, "restarts": None, "sweep": WORST,
            "given": None, "n": n,
            "n_correct": n_correct, "accuracy": n_correct / n, "target_success": None,
            "seconds": round(seconds, 6), "attack_seed": attack_seed, "robench_version": __version__,
            "source": " + ".join(sorted(labels)), "model_sha256": model_sha, "images_sha256": images_sha,
            "source_sha256": None})
    return result
