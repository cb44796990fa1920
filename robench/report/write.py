"""``robench report``: render every table and figure a results directory allows, then write them.

Everything is rendered into memory before anything is written, so bad input changes no file;
every file is written atomically, and re-running gives byte-identical files. A directory holding
only an attacks CSV (no run metadata) gets its attack figures and a robustness table per checkpoint
(:mod:`robench.report.bare_csv`, :mod:`robench.report.checkpoint_table`), and one line on stderr says
what was left out.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.style

from robench.files import atomic_write_bytes
from robench.progress import console
from robench.report.audit_table import audit_markdown
from robench.report.bare_csv import SKIPPED_PARTS
from robench.report.checkpoint_table import render_checkpoint_table
from robench.report.figures import render_figures
from robench.report.formatting import csv_text
from robench.report.loader import Results, load_results
from robench.report.robustness import ROBUSTNESS_COLUMNS, robustness_rows
from robench.report.robustness_text import robustness_markdown
from robench.report.table1 import render_table1
from robench.report.worst_case_figure import worst_case_figure


def render_audit(results: Results) -> dict[Path, bytes]:
    """``robustness.csv``, ``robustness.md``, ``audit.md`` and Fig. 7 as file bytes; {} without an audit.json."""
    if not results.audits:
        return {}
    rows = robustness_rows(results)
    texts = {"robustness.csv": csv_text(rows, ROBUSTNESS_COLUMNS), "robustness.md": robustness_markdown(results, rows),
             "audit.md": audit_markdown(results)}
    files = {results.root / name: text.encode("utf-8") for name, text in texts.items()}
    with matplotlib.style.context("default"):
        files |= worst_case_figure(results, rows)
    return files


def skipped_note(results: Results) -> str | None:
    """The one line saying what a report left out for lack of run metadata; None when nothing was."""
    if not results.csv_only:
        return None
    return (f"{results.root}: no run metadata (run.json, manifest.json), only {results.csv.name}: wrote the attack "
            f"figures and robustness.md/.csv; skipped {', '.join(SKIPPED_PARTS)}")


def write_report(results_dir: str | Path, compare_paper: bool | None = None) -> list[Path]:
    """Read results_dir (a results directory, or an attacks CSV) and (re)write Table I and Figs. 2-6 (those its
    data allows), and where runs were audited the robustness table, the audit matrix and Fig. 7
    (:func:`render_audit`); from a bare attacks CSV, its attack figures and robustness table. Return the paths.

    ``compare_paper`` None: as the recipe's ``[report] compare_paper`` in manifest.json says (so that
    ``robench report`` rewrites what ``robench run`` wrote), else False. Everything is rendered before
    anything is written, so bad input changes no file.
    """
    results = load_results(results_dir)
    if compare_paper is None:
        compare_paper = results.report_settings.get("compare_paper") is True
    if results.csv_only:
        files = render_figures(results) | render_checkpoint_table(results)
    else:
        files = render_table1(results, compare_paper) | render_figures(results) | render_audit(results)
    for path, data in files.items():
        atomic_write_bytes(path, data)
    note = skipped_note(results)
    if note:
        console.print(note, highlight=False, markup=False, soft_wrap=True)
    return list(files)
