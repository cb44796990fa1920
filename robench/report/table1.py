"""The paper's Table I from a results directory: CSV, Markdown and booktabs LaTeX.

Follows Ali, Migliorati, Bianchi and Magli, "Beyond cross-entropy: learning highly separable
feature distributions for robust and accurate classification": Table I is the maximum test
accuracy over epochs per method (loss x training mode) and dataset x architecture, with the
paper's numbers (shipped as ``robench/report/paper_table1.csv``) beside ours on request. Where
runs were audited, ``table1.md`` gains a "Robustness audit" section (:mod:`robench.report.robustness`).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import defaultdict
from importlib import resources
from pathlib import Path

from robench.report.formatting import csv_text, tex_escape
from robench.report.loader import Results, Run, column_order, identity_notes, method_label, method_order
from robench.report.robustness import table1_section

PAPER_SOURCE = "Table I of Ali et al., 'Beyond cross-entropy: learning highly separable feature distributions'"


def paper_table1() -> list[dict]:
    """The paper's Table I (accuracy in %), shipped as ``robench/report/paper_table1.csv``."""
    text = resources.files("robench.report").joinpath("paper_table1.csv").read_text(encoding="utf-8")
    return [dict(row, accuracy=float(row["accuracy"])) for row in csv.DictReader(io.StringIO(text))]


def paper_model_for(dataset: str, model: str, paper: list[dict]) -> str | None:
    """The paper's architecture to compare (dataset, model) with: the same one, else the dataset's first column."""
    models = [r["model"] for r in paper if r["dataset"] == dataset]
    if model in models:
        return model
    models.sort(key=lambda m: column_order(dataset, m))
    return models[0] if models else None


def table1_rows(runs: list[Run], compare_paper: bool = False) -> list[dict]:
    """One row per (method, dataset, model): best test accuracy in %, mean/min/max over seeds."""
    groups = defaultdict(list)
    for run in runs:
        groups[(run.loss, run.training, run.variant, run.dataset, run.model)].append(run)
    paper = paper_table1() if compare_paper else []
    by_key = {(r["method_loss"], r["training"], r["dataset"], r["model"]): r["accuracy"] for r in paper}
    rows = []
    for key in sorted(groups, key=lambda k: method_order(*k[:3]) + column_order(*k[3:])):
        loss, training, variant, dataset, model = key
        accs = sorted(100.0 * r.best for r in groups[key])
        row = {"method": method_label(loss, training, variant), "loss": loss, "training": training,
               "loss_hyper": variant, "dataset": dataset, "model": model, "n_seeds": len(accs),
               "seeds": " ".join(str(s) for s in sorted(r.seed for r in groups[key])),
               "accuracy_mean": math.fsum(accs) / len(accs), "accuracy_min": accs[0], "accuracy_max": accs[-1]}
        if compare_paper:
            paper_model = paper_model_for(dataset, model, paper)
            row["paper_model"] = paper_model or ""
            row["paper_accuracy"] = by_key.get((loss, training, dataset, paper_model))
        rows.append(row)
    return rows


def _grid(rows: list[dict], compare_paper: bool) -> tuple[list[str], list[tuple], list[list[str]]]:
    """Row labels, (dataset, model) columns and cell texts ("–" where a combination is missing)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    columns = sorted({(r["dataset"], r["model"]) for r in rows}, key=lambda c: column_order(*c))
    cells = {(r["method"], r["dataset"], r["model"]): r for r in rows}
    grid = []
    for method in methods:
        line = []
        for dataset, model in columns:
            row = cells.get((method, dataset, model))
            if row is None:
                line.append("–")
                continue
            notes = [f"n={row['n_seeds']}"] if row["n_seeds"] > 1 else []
            if compare_paper and row["paper_accuracy"] is not None:
                notes.append(f"paper {row['paper_accuracy']:.2f}")
            line.append(f"{row['accuracy_mean']:.2f}" + (f" ({', '.join(notes)})" if notes else ""))
        grid.append(line)
    return methods, columns, grid


def _notes(results: Results, rows: list[dict], compare_paper: bool) -> list[str]:
    notes = ["Each cell: maximum test accuracy over epochs (%) of one run, or the mean over n seeds "
             "(min and max in table1.csv)."]
    if any(r["loss_hyper"] for r in rows):
        notes.append("A method shown with (key=value) has runs with different loss hyperparameters; "
                     "each setting is its own row.")
    if compare_paper:
        notes.append(f"Paper numbers: {PAPER_SOURCE}, same dataset and method.")
        differ = sorted({(r["dataset"], r["model"], r["paper_model"]) for r in rows
                         if r["paper_model"] and r["paper_model"] != r["model"]}, key=lambda c: column_order(*c[:2]))
        if differ:
            notes.append("Architectures differ from the paper's: " + "; ".join(
                f"{d} {m} (paper: {p})" for d, m, p in differ) + ".")
        absent = sorted({r["dataset"] for r in rows if not r["paper_model"]})
        if absent:
            notes.append(f"Not in the paper: {', '.join(absent)}.")
    if results.skipped:
        notes.append(f"Skipped {len(results.skipped)} unfinished run(s): {', '.join(results.skipped)}.")
    notes += identity_notes(results)
    return notes



def table1_markdown(results: Results, rows: list[dict], compare_paper: bool = False) -> str:
    methods, columns, grid = _grid(rows, compare_paper)
    lines = [f"# Table I: maximum test accuracy (%) — {results.name}", ""]
    if results.scale:
        lines += [f"**{results.scale}**", ""]
    lines.append("| Method | " + " | ".join(f"{d} {m}" for d, m in columns) + " |")
    lines.append("|---|" + "---:|" * len(columns))
    lines += [f"| {method} | " + " | ".join(line) + " |" for method, line in zip(methods, grid)]
    lines += [""] + [f"- {note}" for note in _notes(results, rows, compare_paper)]
    if results.audits:
        lines += [""] + table1_section(results)
    return "\n".join(lines) + "\n"


def table1_tex(results: Results, rows: list[dict], compare_paper: bool = False) -> str:
    methods, columns, grid = _grid(rows, compare_paper)
    caption = f"Maximum test accuracy (\\%) of {tex_escape(results.name)}."
    if results.scale:
        caption += f" \\textbf{{{tex_escape(results.scale)}.}}"
    caption += " " + " ".join(tex_escape(n) for n in _notes(results, rows, compare_paper))
    lines = [r"% Table I written by robench report; needs \usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
             f"\\caption{{{caption}}}", f"\\label{{tab:table1-{re.sub(r'[^A-Za-z0-9-]+', '-', results.name)}}}",
             r"\begin{tabular}{l" + "r" * len(columns) + "}", r"\toprule",
             "Method & " + " & ".join(tex_escape(d) for d, _ in columns) + r" \\",
             " & " + " & ".join(tex_escape(m) for _, m in columns) + r" \\", r"\midrule"]
    lines += [tex_escape(method) + " & " + " & ".join(tex_escape(c) for c in line) + r" \\"
              for method, line in zip(methods, grid)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


TABLE1_COLUMNS = ["method", "loss", "training", "loss_hyper", "dataset", "model", "n_seeds", "seeds",
                  "accuracy_mean", "accuracy_min", "accuracy_max"]


def render_table1(results: Results, compare_paper: bool = False) -> dict[Path, bytes]:
    """``table1.csv``, ``table1.md`` and ``table1.tex`` of the results directory, as file bytes."""
    rows = table1_rows(results.runs, compare_paper)
    columns = TABLE1_COLUMNS + (["paper_model", "paper_accuracy"] if compare_paper else [])
    texts = {"table1.csv": csv_text(rows, columns), "table1.md": table1_markdown(results, rows, compare_paper),
             "table1.tex": table1_tex(results, rows, compare_paper)}
    return {results.root / name: text.encode("utf-8") for name, text in texts.items()}
