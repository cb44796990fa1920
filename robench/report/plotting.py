"""Plotting helpers shared by every figure: one colour and marker per method, panels, titles, files.

A method keeps one colour and marker in every figure (:data:`STYLES`); regular training is drawn
solid, fine-tuning dashed. Figures are drawn on matplotlib's Agg canvas without pyplot and written
as PNG (150 dpi) and PDF with no timestamps, so re-runs give identical files.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from robench.report.loader import Results

STYLES = {"gccs": ("tab:red", "o"), "ce": ("black", "s"), "jacobian": ("tab:blue", "^"),
          "input-grad": ("tab:green", "D"), "cross-lipschitz": ("tab:purple", "v")}
"""loss -> (colour, marker); unknown losses get :data:`SPARE_COLOURS` in name order."""
SPARE_COLOURS = ("tab:orange", "tab:brown", "tab:cyan", "tab:olive", "tab:pink", "tab:gray")
SPARE_MARKERS = ("P", "X", "*", "h", "<", ">")
LINESTYLES = {"regular": "-", "finetune": "--"}
EPS_LABELS = {"relative": "relative ε (‖n‖∞ ≤ ε‖x‖∞)", "absolute": "ε (L∞)"}


def method_style(loss: str, training: str, variant_index: int = 0) -> dict:
    """Line style of a method: colour and marker by loss, solid (regular) or dashed (fine-tuning)."""
    if loss in STYLES:
        colour, marker = STYLES[loss]
    else:
        colour, marker = SPARE_COLOURS[sum(map(ord, loss)) % len(SPARE_COLOURS)], "P"
    if variant_index:
        marker = SPARE_MARKERS[(variant_index - 1) % len(SPARE_MARKERS)]
    return {"color": colour, "marker": marker, "linestyle": LINESTYLES.get(training, "-.")}


def figure_title(fig: Figure, title: str, results: Results) -> None:
    """The figure's title with the results' name, and the scale label (e.g. "reduced-scale CPU run") beneath."""
    lines = [f"{title} — {results.name}"]
    if results.scale:
        lines += textwrap.wrap(results.scale, min(110, max(60, int(fig.get_figwidth() * 12))))
    lines[1:] = [line.replace("$", r"\$") for line in lines[1:]]  # plain text, not mathtext
    fig.suptitle("\n".join(lines), fontsize=10)


def figure_files(fig: Figure, root: Path, stem: str) -> dict[Path, bytes]:
    """PNG (150 dpi) and PDF bytes of ``fig``, without timestamps or version strings."""
    files = {}
    for fmt, metadata in (("png", {"Software": None}),
                          ("pdf", {"CreationDate": None, "Producer": None, "Creator": None})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=150, metadata=metadata, bbox_inches="tight")
        files[root / "figures" / f"{stem}.{fmt}"] = buffer.getvalue()
    return files


def panel_grid(n: int, figsize_each=(4.4, 3.4), ncols_max=3) -> tuple[Figure, list]:
    """A figure with ``n`` panels (at most ``ncols_max`` per row, 2x2 for four) and the list of their axes."""
    ncols = 2 if n == 4 else min(n, ncols_max)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(max(figsize_each[0] * ncols, 6.4), figsize_each[1] * nrows + 1.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def shared_legend(fig: Figure, axes: list) -> None:
    """One legend below the panels with every label of ``axes`` once."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=2 if len(axes) == 1 else 3,
                   fontsize=8, frameon=False)


def mean_band(ax, x, values: list[list[float]], style: dict, label: str, **line) -> None:
    """Mean line over seeds, with a shaded min-max band where there are several."""
    mean = [float(np.mean(v)) for v in values]
    ax.plot(x, mean, label=label, **{"markersize": 4, **style, **line})
    if any(len(v) > 1 for v in values):
        ax.fill_between(x, [min(v) for v in values], [max(v) for v in values], color=style["color"],
                        alpha=0.15, linewidth=0)
