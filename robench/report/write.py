"""``robench report``: render every table and figure a results directory allows, then write them.

Everything is rendered into memory before anything is written, so bad input changes no file;
every file is written atomically, and re-running gives byte-identical files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.style

from robench.files import atomic_write_bytes
from robench.report.figures import render_figures
from robench.report.formatting import csv_text
from robench.report.loader import Results, load_results
from robench.report.robustness import ROBUSTNESS_COLUMNS, audit_markdown, robustness_markdown, robustness_rows
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


def write_report(results_dir: str | Path, compare_paper: bool = False) -> list[Path]:
    """Read results_dir and (re)write Table I and Figs. 2-6 (those its data allows), and where runs were
    audited the robustness table, the audit matrix and Fig. 7 (:func:`render_audit`); return the paths.

    Everything is rendered before anything is written, so bad input changes no file.
    """
    results = load_results(results_dir)
    files = render_table1(results, compare_paper) | render_figures(results) | render_audit(results)
    for path, data in files.items():
        atomic_write_bytes(path, data)
    return list(files)
