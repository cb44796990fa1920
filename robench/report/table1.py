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
import re
from importlib import resources
from pathlib import Path

import pandas as pd

from robench.report.formatting import csv_text, tex_escape
from robench.report.intervals import interval_text, wilson_pct
from robench.report.loader import (Results, Run, column_order, identity_notes, method_label, method_order)
from robench.report.robustness import robustness_rows
from robench.report.robustness_text import table1_section

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


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run (tidy): its method, dataset x model, seed, best test accuracy (%) and the count behind it
    on its n_test test images (missing where run.json lacks n_test)."""
    return pd.DataFrame({
        "loss": [r.loss for r in runs], "training": [r.training for r in runs], "loss_hyper": [r.variant for r in runs],
        "dataset": [r.dataset for r in runs], "model": [r.model for r in runs], "seed": [r.seed for r in runs],
        "accuracy": [100.0 * r.best for r in runs],
        "n_test": pd.array([r.n_test for r in runs], dtype="Int64"),
        "n_correct": pd.array([round(r.best * r.n_test) if r.n_test else None for r in runs], dtype="Int64")})


def _pooled(values: pd.Series):
    """The sum of a count over seeds; missing if any seed's count is."""
    return pd.NA if values.isna().any() else int(values.sum())


def table1_rows(runs: list[Run], compare_paper: bool = False) -> pd.DataFrame:
    """One row per (method, dataset, model): best test accuracy in %, its mean/min/max over seeds, and the 95 %
    Wilson interval of the pooled count (n_correct of n_test summed over seeds)."""
    keys = ["loss", "training", "loss_hyper", "dataset", "model"]
    table = runs_frame(runs).sort_values("seed", kind="stable").groupby(keys, sort=False).agg(
        n_seeds=("seed", "size"), seeds=("seed", lambda s: " ".join(map(str, s))),
        accuracy_mean=("accuracy", "mean"), accuracy_min=("accuracy", "min"), accuracy_max=("accuracy", "max"),
        n_test=("n_test", _pooled), n_correct=("n_correct", _pooled)).reset_index()
    table["n_test"], table["n_correct"] = table["n_test"].astype("Int64"), table["n_correct"].astype("Int64")
    low, high = wilson_pct(table["n_correct"].to_numpy(float, na_value=float("nan")),
                           table["n_test"].to_numpy(float, na_value=float("nan")))
    table["accuracy_low"], table["accuracy_high"] = low, high
    table.insert(0, "method", [method_label(*k) for k in zip(table["loss"], table["training"], table["loss_hyper"])])
    order = sorted(range(len(table)), key=lambda i: method_order(*table.loc[i, keys[:3]])
                   + column_order(*table.loc[i, keys[3:]]))
    table = table.loc[order].reset_index(drop=True)
    if compare_paper:
        paper = paper_table1()
        by_key = {(r["method_loss"], r["training"], r["dataset"], r["model"]): r["accuracy"] for r in paper}
        table["paper_model"] = [paper_model_for(d, m, paper) or "" for d, m in zip(table["dataset"], table["model"])]
        table["paper_accuracy"] = [by_key.get((loss, t, d, pm)) for loss, t, d, pm in
                                   zip(table["loss"], table["training"], table["dataset"], table["paper_model"])]
    return table


def _cell(row) -> str:
    notes = [f"n={row['n_seeds']}"] if row["n_seeds"] > 1 else []
    if "paper_accuracy" in row and row["paper_accuracy"] is not None and not pd.isna(row["paper_accuracy"]):
        notes.append(f"paper {row['paper_accuracy']:.2f}")
    return (interval_text(row["accuracy_mean"], row["accuracy_low"], row["accuracy_high"])
            + (f" ({', '.join(notes)})" if notes else ""))


def _grid(rows: pd.DataFrame, compare_paper: bool) -> tuple[list[str], list[tuple], list[list[str]]]:
    """Row labels, (dataset, model) columns and cell texts ("–" where a combination is missing): a pivot."""
    if rows.empty:
        return [], [], []
    cells = rows.assign(cell=[_cell(r) for _, r in rows.iterrows()])
    grid = cells.pivot(index="method", columns=["dataset", "model"], values="cell")
    methods = list(dict.fromkeys(rows["method"]))
    columns = sorted(grid.columns, key=lambda c: column_order(*c))
    grid = grid.reindex(index=methods, columns=pd.MultiIndex.from_tuples(columns)).fillna("–")
    return methods, columns, grid.to_numpy().tolist()


def _notes(results: Results, rows: pd.DataFrame, compare_paper: bool) -> list[str]:
    notes = ["Each cell: maximum test accuracy over epochs (%) of one run, or the mean over n seeds (min and max in "
             "table1.csv), with its 95 % Wilson score interval in brackets, value [low, high]: on n_correct/n_test "
             "of the run's test set, or over several seeds of the pooled count (test images summed over seeds; "
             "it describes the test set's sampling noise, the min-max the seeds' spread). The maximum over epochs "
             "is picked on the test set itself, so it is slightly optimistic."]
    half = ((rows["accuracy_high"] - rows["accuracy_low"]) / 2).max() if not rows.empty else float("nan")
    if half == half:  # not NaN: some cell has an interval
        n_tests = ", ".join(str(int(n)) for n in sorted(set(rows["n_test"].dropna())))
        notes.append(f"The 95 % intervals here are up to ±{half:.1f} pts (n = {n_tests} test images): differences "
                     "between two cells smaller than that are within noise.")
    if not rows.empty and rows["n_test"].isna().any():
        notes.append("No interval where run.json does not record n_test (runs written before robench recorded it).")
    if rows["loss_hyper"].astype(bool).any():
        notes.append("A method shown with (key=value) has runs with different loss hyperparameters; "
                     "each setting is its own row.")
    if compare_paper:
        notes.append(f"Paper numbers: {PAPER_SOURCE}, same dataset and method.")
        differ = sorted({(d, m, p) for d, m, p in zip(rows["dataset"], rows["model"], rows["paper_model"])
                         if p and p != m}, key=lambda c: column_order(*c[:2]))
        if differ:
            notes.append("Architectures differ from the paper's: " + "; ".join(
                f"{d} {m} (paper: {p})" for d, m, p in differ) + ".")
        absent = sorted({d for d, p in zip(rows["dataset"], rows["paper_model"]) if not p})
        if absent:
            notes.append(f"Not in the paper: {', '.join(absent)}.")
    if results.skipped:
        notes.append(f"Skipped {len(results.skipped)} unfinished run(s): {', '.join(results.skipped)}.")
    notes += identity_notes(results)
    return notes



def table1_markdown(results: Results, rows: pd.DataFrame, compare_paper: bool = False) -> str:
    methods, columns, grid = _grid(rows, compare_paper)
    lines = [f"# Table I: maximum test accuracy (%) — {results.name}", ""]
    if results.scale:
        lines += [f"**{results.scale}**", ""]
    lines.append("| Method | " + " | ".join(f"{d} {m}" for d, m in columns) + " |")
    lines.append("|---|" + "---:|" * len(columns))
    lines += [f"| {method} | " + " | ".join(line) + " |" for method, line in zip(methods, grid)]
    lines += [""] + [f"- {note}" for note in _notes(results, rows, compare_paper)]
    if results.audits:
        lines += [""] + table1_section(results, robustness_rows(results))
    return "\n".join(lines) + "\n"


def table1_tex(results: Results, rows: pd.DataFrame, compare_paper: bool = False) -> str:
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
                  "accuracy_mean", "accuracy_min", "accuracy_max", "n_test", "n_correct", "accuracy_low",
                  "accuracy_high"]
"""Columns of ``table1.csv``: accuracies in %; n_test and n_correct summed over seeds; accuracy_low/high the
95 % Wilson interval of that pooled count."""


def render_table1(results: Results, compare_paper: bool = False) -> dict[Path, bytes]:
    """``table1.csv``, ``table1.md`` and ``table1.tex`` of the results directory, as file bytes; {} without runs
    (a bare attacks CSV)."""
    if results.csv_only:
        return {}
    rows = table1_rows(results.runs, compare_paper)
    columns = TABLE1_COLUMNS + (["paper_model", "paper_accuracy"] if compare_paper else [])
    texts = {"table1.csv": csv_text(rows, columns), "table1.md": table1_markdown(results, rows, compare_paper),
             "table1.tex": table1_tex(results, rows, compare_paper)}
    return {results.root / name: text.encode("utf-8") for name, text in texts.items()}
