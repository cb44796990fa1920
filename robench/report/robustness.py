"""Audit reports: ``runs/<run>/audit.json`` and the ``worst`` rows of ``attacks.csv`` -> the
robustness table (``robustness.csv``, ``robustness.md``), the check matrix (``audit.md``) and
Fig. 7 (paper-protocol PGD vs worst-case accuracy).

A robustness number is only worth what the strongest reasonable attack leaves standing (Carlini
et al. 2019, "On evaluating adversarial robustness"). The headline robust accuracy of a model is
therefore its ``worst`` row at the audit's checking radius ε_c: an image counts as robust only if
it withstood every attack run on it there (:mod:`robench.evaluation.worst`); the paper's protocol number
(Ali et al., PGD-5 and TGSM-5 with the cross-entropy loss) stands beside it. Reads only what
``robench audit`` and the sweeps wrote; :mod:`robench.report.write` writes the files.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from robench.report.loader import (SEVERITY, Audit, Results, column_order, identity_notes, method_label,
                                   method_order)

VERDICT_COLOURS = {"pass": "tab:green", "warn": "tab:orange", "fail": "tab:red"}
ROBUSTNESS_COLUMNS = ["method", "loss", "training", "loss_hyper", "dataset", "model", "n_seeds", "seeds", "eps_mode",
                      "eps_check", "n", "protocol_steps", "clean_accuracy", "protocol_pgd", "protocol_tgsm",
                      "strongest_attack", "strongest_accuracy", "worst_accuracy", "surviving_share", "verdict",
                      "failed_checks", "warned_checks", "worst_from"]
"""Columns of ``robustness.csv``; accuracies and the surviving share in %."""


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
    """The ``worst`` row of attacks.csv for an audit's checkpoint, ε mode, ε_c, subset size and seed."""
    name = Path(str(data["checkpoint"])).name
    for row in results.attacks:
        if (row["attack"] == "worst" and Path(row["checkpoint"]).name == name and row["eps_mode"] == data["eps_mode"]
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
            "seed": run.seed if run else d.get("seed"), "eps_mode": d["eps_mode"], "eps_check": float(d["eps_check"]),
            "n": int(d["n"]), "steps": (d.get("config") or {}).get("steps", 5), "clean": d["clean_accuracy"],
            "pgd": d["protocol"].get("pgd"), "tgsm": d["protocol"].get("tgsm"),
            "attacks": {k: v for k, v in d["attacks_at_eps_check"].items() if v is not None},
            "config": d.get("config") or {}, "worst": worst,
            "worst_from": "attacks.csv" if row else "audit.json" if worst is not None else "",
            "verdict": d["verdict"], "checks": checks}


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return math.fsum(values) / len(values) if values else None


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def robustness_rows(results: Results) -> list[dict]:
    """One row per (method, dataset, model, ε mode, ε_c): means over audited seeds, accuracies in %."""
    groups = defaultdict(list)
    for audit in results.audits:
        s = audit_summary(results, audit)
        groups[(s["dataset"], s["model"], s["eps_mode"], s["eps_check"], s["loss"], s["training"], s["variant"],
                s["steps"])].append(s)
    rows = []
    for key in sorted(groups, key=lambda k: column_order(*k[:2]) + k[2:4] + method_order(*k[4:7]) + (k[7],)):
        dataset, model, eps_mode, eps_check, loss, training, variant, steps = key
        members = sorted(groups[key], key=lambda s: (s["seed"] if isinstance(s["seed"], int) else -1, s["run"]))
        common = set.intersection(*(set(s["attacks"]) for s in members))
        strongest = min(((_mean([s["attacks"][r] for s in members]), r) for r in common), default=(None, ""))
        worst, pgd = _mean([s["worst"] for s in members]), _mean([s["pgd"] for s in members])
        verdict = max((s["verdict"] for s in members), key=SEVERITY.index)
        named = {status: " ".join(dict.fromkeys(c["name"] for s in members for c in s["checks"]
                                                if c["status"] == status)) for status in ("fail", "warn")}
        rows.append({
            "method": method_label(loss, training, variant), "loss": loss, "training": training,
            "loss_hyper": variant, "dataset": dataset, "model": model, "n_seeds": len(members),
            "seeds": " ".join(str(s["seed"]) for s in members), "eps_mode": eps_mode, "eps_check": f"{eps_check:g}",
            "n": " ".join(dict.fromkeys(str(s["n"]) for s in members)), "protocol_steps": steps,
            "clean_accuracy": _pct(_mean([s["clean"] for s in members])), "protocol_pgd": _pct(pgd),
            "protocol_tgsm": _pct(_mean([s["tgsm"] for s in members])),
            "strongest_attack": role_label(strongest[1], members[0]["config"]) if strongest[1] else "",
            "strongest_accuracy": _pct(strongest[0]), "worst_accuracy": _pct(worst),
            "surviving_share": 100.0 * worst / pgd if worst is not None and pgd else None, "verdict": verdict,
            "failed_checks": named["fail"], "warned_checks": named["warn"],
            "worst_from": " ".join(dict.fromkeys(s["worst_from"] for s in members if s["worst_from"])),
            "_worst": [_pct(s["worst"]) for s in members if s["worst"] is not None],
            "_pgd": [_pct(s["pgd"]) for s in members if s["pgd"] is not None]})
    return rows


# --- Markdown -------------------------------------------------------------------------------------------


def _cell(value: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if value is None else fmt.format(value)


def _md(text: str) -> str:
    return str(text).replace("|", r"\|")


def _header(title: str, results: Results) -> list[str]:
    return [f"# {title} — {results.name}", ""] + ([f"**{results.scale}**", ""] if results.scale else [])


def _verdict_text(row: dict) -> str:
    named = [row["failed_checks"].replace(" ", ", ")] if row["failed_checks"] else []
    if row["warned_checks"]:
        named.append(("warn: " if row["failed_checks"] else "") + row["warned_checks"].replace(" ", ", "))
    return f"**{row['verdict']}**" + (f" ({'; '.join(named)})" if named else "")


def joined(rows: list[dict], key: str) -> str:
    """The distinct values of ``key`` in ``rows``, joined with " / "."""
    return " / ".join(dict.fromkeys(str(r[key]) for r in rows))


def by_section(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Robustness rows grouped by (dataset, model, ε mode, ε_c): one table or panel each."""
    sections = defaultdict(list)
    for row in rows:
        sections[(row["dataset"], row["model"], row["eps_mode"], row["eps_check"])].append(row)
    return sections


def robustness_markdown(results: Results, rows: list[dict]) -> str:
    lines = _header("Robust accuracy (%): worst case over every attack vs the paper's protocol", results)
    steps = joined(rows, "protocol_steps")
    for (dataset, model, eps_mode, eps), here in by_section(rows).items():
        k = here[0]["protocol_steps"]
        lines += [f"## {dataset} {model} — {eps_mode} ε_c = {eps}, {joined(here, 'n')} test images", "",
                  f"| Method | Clean | PGD-{k} (protocol) | TGSM-{k} (protocol) | Strongest single attack | "
                  "Worst case | Surviving share | Audit verdict |", "|---|---:|---:|---:|---|---:|---:|---|"]
        for r in here:
            seeds = f" (mean of {r['n_seeds']} seeds)" if r["n_seeds"] > 1 else ""
            strongest = f"{r['strongest_attack']} {_cell(r['strongest_accuracy'])}" if r["strongest_attack"] else "–"
            lines.append(f"| {_md(r['method'])}{seeds} | {_cell(r['clean_accuracy'])} | {_cell(r['protocol_pgd'])} | "
                         f"{_cell(r['protocol_tgsm'])} | {_md(strongest)} | **{_cell(r['worst_accuracy'])}** | "
                         f"{_cell(r['surviving_share'], '{:.1f} %')} | {_verdict_text(r)} |")
        lines.append("")
    lines += [
        "- Accuracies in % on the audit's seeded, class-stratified test subset, all at the checking radius ε_c "
        "(relative ε: ‖n‖∞ ≤ ε‖x‖∞).",
        f"- PGD-{steps} / TGSM-{steps} (protocol): the paper's protocol: cross-entropy attack loss, one random "
        "start, each ε attacked on its own.",
        "- Strongest single attack: the audit's attack with the lowest accuracy at ε_c.",
        "- **Worst case** (the headline robust accuracy): an image counts as robust only if it withstood every "
        "attack run on it at ε_c (the `worst` row of attacks.csv; its `source` column lists the attacks). It is "
        "never above any single attack.",
        f"- **Surviving share** = worst case / protocol PGD-{steps} × 100: the share of the robustness that the "
        "paper's protocol measures which survives every attack. 100 % means the protocol's number holds; a low "
        "share means the protocol overstates robustness; – where the protocol accuracy is 0.",
        "- Audit verdict: fail if any of the seven checks of [audit.md](audit.md) fails, warn if any warns, else "
        "pass; the failed and warned checks are named. Over several seeds: means of the numbers, the worst "
        "verdict, and every check that failed or warned in any seed."]
    lines += [f"- {note}" for note in identity_notes(results)]
    fallback = [r["method"] for r in rows if "audit.json" in r["worst_from"]]
    if fallback:
        lines.append(f"- Worst case taken from audit.json (no matching `worst` row in attacks.csv): "
                     f"{', '.join(fallback)}.")
    return "\n".join(lines) + "\n"


def _ordered(results: Results) -> list[dict]:
    summaries = [audit_summary(results, a) for a in results.audits]
    return sorted(summaries, key=lambda s: column_order(s["dataset"], s["model"]) + (s["eps_mode"], s["eps_check"])
                  + method_order(s["loss"], s["training"], s["variant"]) + (str(s["seed"]), s["run"]))


def audit_markdown(results: Results) -> str:
    """The check matrix (checkpoint x checks 1-7), the checks' questions and thresholds, and findings."""
    summaries = _ordered(results)
    names = {}
    for s in summaries:
        for c in s["checks"]:
            names.setdefault(c["id"], c["name"])
    ids = sorted(names)
    lines = _header("Robustness audit: checks per checkpoint", results)
    lines += ["| Checkpoint | Method | Data | ε_c | " + " | ".join(f"{i} {names[i]}" for i in ids) + " | Verdict |",
              "|---|---|---|---:|" + "---|" * len(ids) + "---|"]
    for s in summaries:
        by_id = {c["id"]: c for c in s["checks"]}
        cells = ["–" if i not in by_id else by_id[i]["status"] if by_id[i]["status"] == "skipped" else
                 f"{by_id[i]['status']} ({by_id[i]['measured_text']})" for i in ids]
        lines.append(f"| {_md(s['run'])} | {_md(method_label(s['loss'], s['training'], s['variant']))} | "
                     f"{s['dataset']} {s['model']} | {s['eps_mode']} {s['eps_check']:g} | "
                     + " | ".join(_md(c) for c in cells) + f" | **{s['verdict']}** |")
    lines += ["", "## Checks", ""]
    for i in ids:
        asked = {(c["question"], c["threshold"]): None for s in summaries for c in s["checks"] if c["id"] == i}
        lines.append(f"{i}. **{names[i]}**: " + "; ".join(f"{q}. Threshold: {t}." for q, t in asked))
    lines += ["", "Measured values: pts = percentage points of accuracy on the audited subset. A check is skipped "
              "when its attacks could not run (its detail says why). Verdict: fail if any check fails, warn if any "
              "warns, else pass.", "", "## Findings", ""]
    findings = [f"- {s['run']}, check {c['id']} {c['name']}: {c['status']}, {c['measured_text']}"
                + (f"; {c['detail']}" if c.get("detail") else "")
                for s in summaries for c in s["checks"] if c["status"] != "pass"]
    lines += findings or ["Every check passed."]
    return "\n".join(lines) + "\n"


def table1_section(results: Results) -> list[str]:
    """Lines of table1.md's "Robustness audit" section: worst case, protocol PGD and verdict per method."""
    rows = robustness_rows(results)
    columns = list(dict.fromkeys((r["dataset"], r["model"], r["eps_mode"], r["eps_check"]) for r in rows))
    cells = {(r["method"], r["dataset"], r["model"], r["eps_mode"], r["eps_check"]): r for r in rows}
    lines = ["## Robustness audit", "",
             "Worst-case accuracy (%) at the audit's checking radius ε_c (an image counts only if it withstood every "
             "attack run on it), with the paper-protocol PGD accuracy and the audit's verdict in parentheses. "
             "Definitions, the strongest single attack and the failed checks: [robustness.md](robustness.md); "
             "the seven checks per checkpoint: [audit.md](audit.md).", "",
             "| Method | " + " | ".join(f"{d} {m} ({mode} ε_c = {e})" for d, m, mode, e in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for method in dict.fromkeys(r["method"] for r in rows):
        line = []
        for column in columns:
            r = cells.get((method,) + column)
            line.append("–" if r is None else f"{_cell(r['worst_accuracy'])} (PGD-{r['protocol_steps']} "
                        f"{_cell(r['protocol_pgd'])}, {r['verdict']})")
        lines.append(f"| {_md(method)} | " + " | ".join(line) + " |")
    return lines
