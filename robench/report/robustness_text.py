"""``robustness.md`` and table1.md's "Robustness audit" section, from :func:`robench.report.robustness.robustness_rows`.

Every accuracy is shown with its 95 % Wilson interval, ``6.50 [5.2, 8.2]``; a section says which
differences are within noise at its number of images, warns visibly when n ≤ 100 (one image is a
point or more) and names the methods whose worst cases cannot be told apart (overlapping intervals).
"""

from __future__ import annotations

from robench.report.formatting import md_cell
from robench.report.intervals import (interval_text, intervals_overlap, noise_note, small_sample_warning)
from robench.report.loader import Results, identity_notes
from robench.report.plotting import NORM_TEXT
from robench.report.robustness import SECTION, by_section, joined


def norm_name(norm: str) -> str:
    return NORM_TEXT.get(norm, (norm,))[0]


def header(title: str, results: Results) -> list[str]:
    return [f"# {title} — {results.name}", ""] + ([f"**{results.scale}**", ""] if results.scale else [])


def _value(row: dict, column: str) -> str:
    return interval_text(row[column], row[f"{column}_low"], row[f"{column}_high"])


def _verdict_text(row: dict) -> str:
    named = [row["failed_checks"].replace(" ", ", ")] if row["failed_checks"] else []
    if row["warned_checks"]:
        named.append(("warn: " if row["failed_checks"] else "") + row["warned_checks"].replace(" ", ", "))
    return f"**{row['verdict']}**" + (f" ({'; '.join(named)})" if named else "")


def _section_ns(here: list[dict]) -> list[int]:
    return sorted({int(n) for r in here for n in str(r["n"]).split()})


def noise_lines(here: list[dict]) -> list[str]:
    """What is within noise in one section: the rule at its n, and the methods whose worst-case intervals overlap."""
    lines = [f"- {noise_note(n)}" for n in _section_ns(here)]
    pairs = [f"{a['method']} / {b['method']}" for i, a in enumerate(here) for b in here[i + 1:]
             if intervals_overlap((a["worst_accuracy_low"], a["worst_accuracy_high"]),
                                  (b["worst_accuracy_low"], b["worst_accuracy_high"]))]
    if pairs:
        lines.append("- Worst cases whose 95 % intervals overlap, so this sample does not tell them apart: "
                     + "; ".join(md_cell(p) for p in pairs) + ".")
    return lines


def robustness_markdown(results: Results, rows: list[dict]) -> str:
    lines = header("Robust accuracy (%): worst case over every attack vs the paper's protocol", results)
    steps = joined(rows, "protocol_steps")
    for (dataset, model, norm, eps_mode, eps), here in by_section(rows).items():
        k = here[0]["protocol_steps"]
        lines += [f"## {dataset} {model} — {norm_name(norm)}, {eps_mode} ε_c = {eps}, {joined(here, 'n')} test images",
                  ""]
        lines += [f"**{w}**\n" for w in map(small_sample_warning, _section_ns(here)) if w]
        lines += [f"| Method | Clean | PGD-{k} (protocol) | TGSM-{k} (protocol) | Strongest single attack | "
                  "Worst case | Surviving share | Audit verdict |", "|---|---:|---:|---:|---|---:|---:|---|"]
        for r in here:
            seeds = f" (mean of {r['n_seeds']} seeds)" if r["n_seeds"] > 1 else ""
            strongest = f"{r['strongest_attack']} {_value(r, 'strongest_accuracy')}" if r["strongest_attack"] else "–"
            share = "–" if r["surviving_share"] is None else f"{r['surviving_share']:.1f} %"
            lines.append(f"| {md_cell(r['method'])}{seeds} | {_value(r, 'clean_accuracy')} | "
                         f"{_value(r, 'protocol_pgd')} | {_value(r, 'protocol_tgsm')} | {md_cell(strongest)} | "
                         f"**{_value(r, 'worst_accuracy')}** | {share} | {_verdict_text(r)} |")
        lines += [""] + noise_lines(here) + [""]
    lines += [
        "- Accuracies in % on the audit's seeded, class-stratified test subset, all at the checking radius ε_c "
        "(relative ε: ‖n‖∞ ≤ ε‖x‖∞), each with its 95 % Wilson score interval on n_correct/n in brackets, "
        "value [low, high]. Over several seeds: the mean, with the interval of the pooled count (the seeds' images "
        "summed), which describes the images' sampling noise, not the seeds' spread.",
        f"- PGD-{steps} / TGSM-{steps} (protocol): the paper's protocol: cross-entropy attack loss, one random "
        "start, each ε attacked on its own.",
        "- Strongest single attack: the attack with the lowest accuracy at ε_c among those the audit runs on every "
        "image (its cheap stage). The expensive attacks (strong PGD, APGD, FAB, Square, transfer) see only the "
        "images still standing after everything before them, so their rows are not single attacks; what they add "
        "is in the worst case and in audit.md.",
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


def table1_section(results: Results, rows: list[dict]) -> list[str]:
    """Lines of table1.md's "Robustness audit" section: worst case, protocol PGD and verdict per method."""
    columns = list(dict.fromkeys(tuple(r[c] for c in SECTION) for r in rows))
    cells = {(r["method"],) + tuple(r[c] for c in SECTION): r for r in rows}
    lines = ["## Robustness audit", "",
             "Worst-case accuracy (%) at the audit's checking radius ε_c (an image counts only if it withstood every "
             "attack run on it) with its 95 % Wilson interval, and the paper-protocol PGD accuracy and the audit's "
             "verdict in parentheses. Definitions, the strongest single attack and the failed checks: "
             "[robustness.md](robustness.md); the seven checks per checkpoint: [audit.md](audit.md).", "",
             "| Method | " + " | ".join(f"{d} {m} ({norm_name(nm)}, {mode} ε_c = {e})" for d, m, nm, mode, e in columns)
             + " |", "|---|" + "---:|" * len(columns)]
    for method in dict.fromkeys(r["method"] for r in rows):
        line = []
        for column in columns:
            r = cells.get((method,) + column)
            line.append("–" if r is None else f"{_value(r, 'worst_accuracy')} (PGD-{r['protocol_steps']} "
                        f"{interval_text(r['protocol_pgd'], None, None)}, {r['verdict']})")
        lines.append(f"| {md_cell(method)} | " + " | ".join(line) + " |")
    return lines
