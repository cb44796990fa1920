"""Text output shared by the report's tables: CSV cells, Markdown cells, LaTeX escaping."""

from __future__ import annotations

import csv
import io
import math

import pandas as pd


def csv_cell(value):
    """A CSV cell: floats to 4 decimals; None, NaN and pandas' NA as an empty cell."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4f}" if isinstance(value, float) else value


def csv_text(rows: list[dict] | pd.DataFrame, columns: list[str]) -> str:
    """``rows`` (dicts, or a DataFrame's records) as CSV text with ``columns``; floats to 4 decimals, None and NaN
    as an empty cell."""
    if isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row[c]) for c in columns])
    return buffer.getvalue()


def md_cell(text) -> str:
    """Text for a Markdown table cell (``|`` escaped)."""
    return str(text).replace("|", r"\|")


_TEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\~{}",
        "^": r"\^{}", "\\": r"\textbackslash{}", "–": "--", "—": "---", "×": r"$\times$", "ε": r"$\varepsilon$",
        "μ": r"$\mu$", "≤": r"$\leq$", "∞": r"$\infty$", "‖": r"$\|$", "≈": r"$\approx$", "±": r"$\pm$",
        "≥": r"$\geq$", "₂": r"$_2$", "⚠": r"\textbf{(!)}", "·": r"$\cdot$"}


def tex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters (and ε, μ, ×, ...) escaped."""
    return "".join(_TEX.get(ch, ch) for ch in text)
