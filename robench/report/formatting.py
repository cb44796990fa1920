"""Text output shared by the report's tables: CSV cells, LaTeX escaping."""

from __future__ import annotations

import csv
import io


def csv_text(rows: list[dict], columns: list[str]) -> str:
    """``rows`` (dicts) as CSV text with ``columns``; floats to 4 decimals, None as an empty cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else f"{row[c]:.4f}" if isinstance(row[c], float) else row[c]
                         for c in columns])
    return buffer.getvalue()


_TEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\~{}",
        "^": r"\^{}", "\\": r"\textbackslash{}", "–": "--", "—": "---", "×": r"$\times$", "ε": r"$\varepsilon$",
        "μ": r"$\mu$", "≤": r"$\leq$", "∞": r"$\infty$", "‖": r"$\|$"}


def tex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters (and ε, μ, ×, ...) escaped."""
    return "".join(_TEX.get(ch, ch) for ch in text)
