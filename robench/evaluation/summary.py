"""What a sweep measured, as one table: accuracy per checkpoint, ε and attack, with the worst case.

``robench attack`` ends with it. It reads the store, so rows a re-run skipped (already measured on
the same weights and images) are in it too, and only the rows the sweep's own settings write.
"""

from __future__ import annotations

import pandas as pd

from robench.errors import RobenchError
from robench.evaluation.store import ResultStore
from robench.evaluation.sweep import SweepSpec, result_row
from robench.evaluation.worst import WORST
from robench.models.checkpoints import read_metadata
from robench.results import read_attack_rows, row_key

DEFAULT_LOSS = {"jsma": "saliency", "square": "margin", "fab": "margin", "apgd-t": "dlr", "autoattack": "ensemble"}
"""Each attack's own loss (others: ce); a column names the loss only when it is another."""


def sweep_rows(spec: SweepSpec) -> list[dict]:
    """The current rows of ``spec``'s slots (every checkpoint x attack x ε) and the worst rows of those ε."""
    stored = {row_key(r): r for r in ResultStore(spec.out).rows()}
    wanted, groups = [], set()
    for checkpoint in spec.checkpoints:
        try:
            meta = read_metadata(checkpoint)
        except RobenchError:
            continue
        meta = {**meta, "model_sha256": None}
        n = spec.n_samples or meta.get("n_test")
        for name, backend, attack in spec.build_attacks():
            for eps in spec.eps_grid:
                row = stored.get(row_key(result_row(spec, checkpoint, meta, attack, name, backend, eps, n, "")))
                if row is not None:
                    wanted.append(row)
                    groups.add((row["checkpoint"], row["model_sha256"], row["norm"], row["eps_mode"], row["eps"]))
    worst = [r for r in read_attack_rows(spec.out) if r["attack"] == WORST
             and (r["checkpoint"], r["model_sha256"], r["norm"], r["eps_mode"], r["eps"]) in groups]
    return wanted + worst


def accuracy_table(rows: list[dict]) -> pd.DataFrame:
    """Accuracy (%) with checkpoints x ε as rows and attacks (``worst`` last) as columns."""
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    frame["eps"] = frame["eps"].astype(float)
    frame["accuracy"] = 100 * frame["accuracy"].astype(float)
    frame["checkpoint"] = frame["checkpoint"].map(lambda c: c.rstrip("/").rsplit("/", 1)[-1])
    frame["column"] = [WORST if a == WORST else f"{a}/{b}" + ("" if loss == DEFAULT_LOSS.get(a, "ce") else f" {loss}")
                       for a, b, loss in zip(frame["attack"], frame["backend"], frame["attack_loss"])]
    table = frame.pivot_table(index=["checkpoint", "norm", "eps_mode", "eps"], columns="column", values="accuracy",
                              aggfunc="first")
    columns = sorted(c for c in table.columns if c != WORST) + ([WORST] if WORST in table.columns else [])
    return table[columns]
