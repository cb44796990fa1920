"""Plotting helpers shared by every figure: one colour and marker per method, panels, titles, files.

A method keeps one colour and marker in every figure (:data:`STYLES`); regular training is drawn
solid with filled markers, fine-tuning dashed with hollow ones, so lines stay apart in greyscale
too. Every accuracy is drawn with its 95 % interval (:func:`interval_line`: a shaded band). Figures
are drawn on matplotlib's Agg canvas without pyplot and written as PNG (150 dpi) and PDF with no
timestamps, so re-runs give identical files.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from robench.report.intervals import is_missing
from robench.report.loader import Results

STYLES = {"gccs": ("tab:red", "o"), "ce": ("black", "s"), "jacobian": ("tab:blue", "^"),
          "input-grad": ("tab:green", "D"), "cross-lipschitz": ("tab:purple", "v"),
          "pgd-at": ("tab:orange", "P"), "trades": ("tab:brown", "X")}
"""loss -> (colour, marker); unknown losses get :data:`SPARE_COLOURS` in name order."""
SPARE_COLOURS = ("tab:cyan", "tab:olive", "tab:pink", "tab:gray", "gold", "navy")
SPARE_MARKERS = ("*", "h", "<", ">", "p", "d")
CYCLE = tuple(zip(("tab:red", "black", "tab:blue", "tab:green", "tab:purple") + SPARE_COLOURS,
                  ("o", "s", "^", "D", "v") + SPARE_MARKERS))
"""(colour, marker) for lines that are not methods (checkpoints of a bare attacks CSV), in order."""
LINESTYLES = {"regular": "-", "finetune": "--"}
NORM_TEXT = {"Linf": ("L∞", "‖n‖∞", "‖x‖∞"), "L2": ("L2", "‖n‖₂", "‖x‖₂")}


def eps_label(norm: str, eps_mode: str) -> str:
    """The ε axis label, with the threat model's norm and ε mode, e.g. ``ε (L∞, relative: ‖n‖∞ ≤ ε‖x‖∞)``."""
    name, noise, image = NORM_TEXT.get(norm, (norm, f"‖n‖ ({norm})", "‖x‖"))
    if eps_mode == "relative":
        return f"ε ({name}, relative: {noise} ≤ ε{image})"
    if eps_mode == "absolute":
        return f"ε ({name}, absolute: {noise} ≤ ε)"
    return f"ε ({name}, {eps_mode})"


def method_style(loss: str, training: str, variant_index: int = 0) -> dict:
    """Line style of a method: colour and marker by loss; solid with filled markers (regular) or dashed
    with hollow markers (fine-tuning)."""
    if loss in STYLES:
        colour, marker = STYLES[loss]
    else:
        colour, marker = SPARE_COLOURS[sum(map(ord, loss)) % len(SPARE_COLOURS)], "P"
    if variant_index:
        marker = SPARE_MARKERS[(variant_index - 1) % len(SPARE_MARKERS)]
    style = {"color": colour, "marker": marker, "linestyle": LINESTYLES.get(training, "-.")}
    if training == "finetune":
        style["markerfacecolor"] = "white"
    return style


def cycle_style(index: int, training: str = "regular") -> dict:
    """The ``index``-th line style of :data:`CYCLE` (colour and marker), solid or dashed by ``training``."""
    colour, marker = CYCLE[index % len(CYCLE)]
    style = {"color": colour, "marker": marker, "linestyle": LINESTYLES.get(training, "-")}
    if index >= len(CYCLE) or training == "finetune":
        style["markerfacecolor"] = "white"
    return style


def figure_title(fig: Figure, title: str, results: Results) -> None:
    """The figure's title with the results' name, and the scale label (e.g. "reduced-scale CPU run") beneath,
    both wrapped to the figure's width."""
    width = min(110, max(50, int(fig.get_figwidth() * 11)))
    lines = textwrap.wrap(f"{title} — {results.name}", width)
    scale = textwrap.wrap(results.scale, width) if results.scale else []
    lines += [line.replace("$", r"\$") for line in scale]  # plain text, not mathtext
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


def panel_grid(n: int, figsize_each=(4.4, 3.4), ncols_max=3, **subplots) -> tuple[Figure, list]:
    """A figure with ``n`` panels (at most ``ncols_max`` per row, 2x2 for four) and the list of their axes."""
    ncols = 2 if n == 4 and ncols_max >= 2 else min(n, ncols_max)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(max(figsize_each[0] * ncols, 6.4), figsize_each[1] * nrows + 1.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplots).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def shared_legend(fig: Figure, axes: list, ncols: int | None = None) -> None:
    """One legend below the panels with every label of ``axes`` once."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside lower center",
                   ncols=ncols or (2 if len(axes) == 1 else 3), fontsize=8, frameon=False)


def interval_line(ax, x, mean, low, high, style: dict, label: str, spread=None, band: bool = True,
                  bars: bool = False, dodge: float = 0.0, **line) -> None:
    """A line of accuracies (%) with its 95 % interval (``low``, ``high``; NaN: none) as a shaded band, or with
    ``bars`` as error bars shifted sideways by ``dodge`` (x units) so that near-identical lines' bars stay
    apart; over several seeds their min-max (``spread``: (mins, maxs)) as thin capped bars."""
    x = np.asarray(x, dtype=float) + dodge
    mean = np.asarray(mean, dtype=float)
    ax.plot(x, mean, label=label, **{"markersize": 5, **style, **line})
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    if band and not np.isnan(low).all():
        if bars:
            ax.errorbar(x, mean, yerr=np.clip([mean - low, high - mean], 0.0, None), fmt="none", ecolor=style["color"], elinewidth=0.9,
                        alpha=0.6, capsize=0)
        else:
            ax.fill_between(x, low, high, color=style["color"], alpha=0.12, linewidth=0)
    if spread is not None and any(lo != hi for lo, hi in zip(*spread)):
        ax.errorbar(x, mean, yerr=[mean - np.asarray(spread[0]), np.asarray(spread[1]) - mean], fmt="none",
                    ecolor=style["color"], elinewidth=0.8, capsize=2)


def fitted_ylim(values, full=(-2.0, 102.0), narrow: float = 45.0) -> tuple[tuple[float, float], bool]:
    """The y range (%) of accuracy panels: 0-100, or fitted to ``values`` (lines and intervals) when they span
    less than ``narrow`` points, so lines in a narrow band separate; and whether it was fitted."""
    values = [float(v) for v in values if not is_missing(v)]
    if not values or max(values) - min(values) >= narrow:
        return full, False
    lo, hi = min(values), max(values)
    if hi - lo < 10.0:  # at least 10 points, so one image's worth does not fill the axis
        lo, hi = max(full[0], (lo + hi) / 2 - 5.0), min(full[1], (lo + hi) / 2 + 5.0)
    pad = max(1.0, 0.08 * (hi - lo))
    return (max(full[0], math.floor(lo - pad)), min(full[1], math.ceil(hi + pad))), True
