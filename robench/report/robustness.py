"""Audit reports: ``runs/<run>/audit.json`` and the ``worst`` rows of ``attacks.csv`` -> the
robustness table (``robustness.csv``, ``robustness.md``), the check matrix (``audit.md``,
:mod:`robench.report.audit_table`) and Fig. 7 (paper-protocol PGD vs worst-case accuracy).

A robustness number is only worth what the strongest reasonable attack leaves standing (Carlini
et al. 2019, "On evaluating adversarial robustness"). The headline robust accuracy of a model is
therefore its ``worst`` row at the audit's checking radius ε_c: an image counts as robust only if
it withstood every attack run on it there (:mod:`robench.evaluation.worst`); the paper's protocol number
(Ali et al., PGD-5 and TGSM-5 with the cross-entropy loss) stands beside it. Every accuracy has its
95 % Wilson interval on the audited images (pooled over seeds; :mod:`robench.report.intervals`).
Reads only what ``robench audit`` and the sweeps wrote; :mod:`robench.report.write` writes the files.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from robench.report.intervals import count_of, wilson_pct
from robench.report.loader import (SEVERITY, Audit, Results, column_order, method_label, method_order)

VERDICT_COLOURS = {"pass": "tab:green", "warn": "tab:orange", "fail": "tab:red"}
ACCURACIES = ("clean_accuracy", "protocol_pgd", "protocol_tgsm", "strongest_accuracy", "worst_accuracy")
"""The accuracy columns of ``robustness.csv``; each is followed by its ``_low`` and ``_high`` 95 % bounds."""
ROBUSTNESS_COLUMNS = ["method", "loss", "training", "loss_hyper", "dataset", "model", "n_seeds", "seeds", "norm",
                      "eps_mode", "eps_check", "n", "protocol_steps", "clean_accuracy", "clean_accuracy_low",
                      "clean_accuracy_high", "protocol_pgd", "protocol_pgd_low", "protocol_pgd_high", "protocol_tgsm",
                      "protocol_tgsm_low", "protocol_tgsm_high", "strongest_attack", "strongest_accuracy",
                      "strongest_accuracy_low", "strongest_accuracy_high", "worst_accuracy", "worst_accuracy_low",
                      "worst_accuracy_high", "surviving_share", "verdict", "failed_checks", "warned_checks",
                      "worst_from"]
"""Columns of ``robustness.csv``; accuracies, their 95 % Wilson bounds and the surviving share in %."""
SECTION = ["dataset", "model", "norm", "eps_mode", "eps_check"]
"""A table (or panel) of robustness rows: one dataset x model, norm, ε mode and ε_c."""


def role_label(role: str, config: dict) -> str:
    """A reader's name for an audit attack role, e.g. ``pgd-strong`` -> ``PGD-100 x 5 restarts``."""
    c = {"steps": "?", "strong_steps": "?", "strong_restarts": "?", "square_queries": "?", "transfer_steps": "?",
         **(config or {})}
    names = {"pgd": f"PGD-{c['steps']}", "pgd-strong": f"PGD-{c['strong_steps']} x {c['strong_restarts']} restarts",
             "tgsm": f"TGSM-{c['steps']}", "apgd-ce": "APGD-CE", "apgd-dlr": "APGD-DLR",
             "square": f"Square-{c['square_queries']}", "transfer": f"transfer PGD-{c['transfer_steps']}"}
    attack, _, loss = role.partition("-")
    if attack in ("pgd", "tgsm") and loss in ("margin", "dlr"):
        return f"{attack.upper()}-{c['steps']} {'DLR' if loss == 'dlr' else loss}"
    return names.get(role, role)


def _same_eps(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def worst_row(results: Results, data: dict) -> dict | None:
    """The ``worst`` row of attacks.csv for an audit's checkpoint, norm, ε mode, ε_c, subset size and seed."""
    name = Path(str(data["checkpoint"])).name
    for row in results.attacks:
        if (row["attack"] == "worst" and Path(row["checkpoint"]).name == name and row["eps_mode"] == data["eps_mode"]
                and row.get("norm", "Linf") == data.get("norm", "Linf")
                and _same_eps(row["eps"], data["eps_check"]) and row["n"] == str(data["n"])
                and row["attack_seed"] == str(data["attack_seed"])):
            return row
    return None


def audit_summary(results: Results, audit: Audit) -> dict:
    """The numbers of one audited checkpoint (fractions), its method and its verdict."""
    d = audit.data
    run = next((r for r in results.runs if r.name == audit.run), None)
    row = worst_row(results, d)
    worst = row["accuracy"] if row else d.get("worst")
    checks = sorted(d["checks"], key=lambda c: c["id"])
    return {"run": audit.run, "dataset": run.dataset if run else d.get("dataset", "?"),
            "model": run.model if run else d.get("model", "?"), "loss": run.loss if run else d.get("loss", "?"),
            "training": run.training if run else d.get("training", "regular"), "variant": run.variant if run else "",
            "seed": run.seed if run else d.get("seed"), "norm": d.get("norm", "Linf"), "eps_mode": d["eps_mode"],
            "eps_check": float(d["eps_check"]), "n": int(d["n"]), "steps": (d.get("config") or {}).get("steps", 5),
            "clean": d["clean_accuracy"], "pgd": d["protocol"].get("pgd"), "tgsm": d["protocol"].get("tgsm"),
            "attacks": {k: v for k, v in d["attacks_at_eps_check"].items() if v is not None},
            "config": d.get("config") or {}, "worst": worst,
            "worst_k": int(row["n_correct"]) if row else count_of(worst, d["n"]),
            "worst_from": "attacks.csv" if row else "audit.json" if worst is not None else "",
            "verdict": d["verdict"], "checks": checks}


def summaries_frame(results: Results) -> pd.DataFrame:
    """One row per audited checkpoint (tidy; :func:`audit_summary`), in section, method and seed order."""
    frame = pd.DataFrame([audit_summary(results, a) for a in results.audits])
    frame["order"] = [column_order(d, m) + (nm, mode, e) + method_order(loss, t, v)
                      + ((s if isinstance(s, int) else -1), r) for d, m, nm, mode, e, loss, t, v, s, r in
                      zip(*(frame[c] for c in SECTION + ["loss", "training", "variant", "seed", "run"]))]
    return frame.sort_values("order", kind="stable").reset_index(drop=True)


def _pooled(members: pd.DataFrame, key: str, counts: list | None = None) -> tuple:
    """Mean accuracy (%) of ``key`` over members with a value, and the 95 % Wilson bounds of the pooled count."""
    here = members[members[key].notna()]
    if here.empty:
        return None, None, None
    k = counts if counts is not None else [count_of(v, n) for v, n in zip(here[key], here["n"])]
    low, high = wilson_pct(sum(k), int(here["n"].sum()))
    return 100.0 * float(here[key].astype(float).mean()), low, high


def _strongest(members: pd.DataFrame) -> tuple[str, tuple]:
    """The audit role with the lowest mean accuracy among those every member ran (ties: by name), with
    :func:`_pooled`'s numbers."""
    long = pd.DataFrame([(s.run, role, acc, s.n) for s in members.itertuples() for role, acc in s.attacks.items()],
                        columns=["run", "role", "acc", "n"])
    if long.empty:
        return "", (None, None, None)
    table = long.pivot(index="role", columns="run", values="acc").dropna()
    if table.empty:
        return "", (None, None, None)
    means = table.mean(axis=1).reset_index(name="mean").sort_values(["mean", "role"], kind="stable")
    role = means["role"].iloc[0]
    here = long[long["role"] == role]
    low, high = wilson_pct(sum(count_of(a, n) for a, n in zip(here["acc"], here["n"])), int(here["n"].sum()))
    return role, (100.0 * float(means["mean"].iloc[0]), low, high)


def _aggregate(members: pd.DataFrame) -> dict:
    first = members.iloc[0]
    clean, pgd, tgsm = (_pooled(members, key) for key in ("clean", "pgd", "tgsm"))
    with_worst = members[members["worst"].notna()]
    worst = _pooled(members, "worst", counts=list(with_worst["worst_k"]))
    role, strongest = _strongest(members)
    checks = pd.DataFrame([c for cs in members["checks"] for c in cs], columns=["id", "name", "status"])
    named = {status: " ".join(dict.fromkeys(checks.loc[checks["status"] == status, "name"]))
             for status in ("fail", "warn")}
    row = {"method": method_label(first["loss"], first["training"], first["variant"]), "loss": first["loss"],
           "training": first["training"], "loss_hyper": first["variant"], "dataset": first["dataset"],
           "model": first["model"], "n_seeds": len(members), "seeds": " ".join(str(s) for s in members["seed"]),
           "norm": first["norm"], "eps_mode": first["eps_mode"], "eps_check": f"{first['eps_check']:g}",
           "n": " ".join(dict.fromkeys(str(n) for n in members["n"])), "protocol_steps": first["steps"],
           "strongest_attack": role_label(role, first["config"]) if role else "",
           "surviving_share": 100.0 * worst[0] / pgd[0] if worst[0] is not None and pgd[0] else None,
           "verdict": max(members["verdict"], key=SEVERITY.index), "failed_checks": named["fail"],
           "warned_checks": named["warn"],
           "worst_from": " ".join(dict.fromkeys(w for w in members["worst_from"] if w)),
           "_worst": [100.0 * w for w in with_worst["worst"]],
           "_pgd": [100.0 * p for p in members["pgd"] if p is not None and not pd.isna(p)]}
    for column, (value, low, high) in zip(ACCURACIES, (clean, pgd, tgsm, strongest, worst)):
        row |= {column: value, f"{column}_low": low, f"{column}_high": high}
    return row


def robustness_rows(results: Results) -> list[dict]:
    """One row per (dataset, model, norm, ε mode, ε_c, method): means over audited seeds and the 95 % Wilson
    interval of the pooled counts, accuracies in % (a groupby of :func:`summaries_frame`)."""
    if not results.audits:
        return []
    frame = summaries_frame(results)
    keys = SECTION + ["loss", "training", "variant", "steps"]
    return [_aggregate(members) for _, members in frame.groupby(keys, sort=False)]


def joined(rows: list[dict], key: str) -> str:
    """The distinct values of ``key`` in ``rows``, joined with " / "."""
    return " / ".join(dict.fromkeys(str(r[key]) for r in rows))


def by_section(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Robustness rows grouped by (dataset, model, norm, ε mode, ε_c): one table or panel each."""
    sections: dict[tuple, list[dict]] = {}
    for row in rows:
        sections.setdefault(tuple(row[c] for c in SECTION), []).append(row)
    return sections
