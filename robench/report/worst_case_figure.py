"""Fig. 7: paper-protocol PGD vs worst-case accuracy at the audit's checking radius, per method.

The headline robust accuracy is the worst case over every attack (Carlini et al. 2019); the
hatched bar beside it is what the paper's protocol (PGD-5, CE loss) reports. Each bar carries its
value and, as an error bar, its 95 % Wilson interval (over seeds: that of the pooled count).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from matplotlib.patches import Patch

from robench.report.intervals import is_missing
from robench.report.loader import Results
from robench.report.plotting import figure_files, figure_title, method_style, panel_grid
from robench.report.robustness import VERDICT_COLOURS, by_section, joined
from robench.report.robustness_text import norm_name


def _bar(ax, x: float, row: dict, column: str, colour: str, **kw) -> float:
    """One bar with its interval and value; returns the height its annotations reach."""
    value, low, high = row[column], row[f"{column}_low"], row[f"{column}_high"]
    if is_missing(value):
        return 0.0
    error = None if is_missing(low) else [[max(0.0, value - low)], [max(0.0, high - value)]]
    ax.bar(x, value, 0.4, yerr=error, edgecolor=colour, linewidth=1.0, capsize=2, ecolor="0.3", **kw)
    top = value if is_missing(high) else max(value, high)
    ax.text(x, top + 0.8, f"{value:.1f}", ha="center", va="bottom", fontsize=6.5)
    return top + 3.5


def worst_case_figure(results: Results, rows: list[dict]) -> dict[Path, bytes]:
    """Paired bars per method: paper-protocol PGD (hatched) and worst-case accuracy (filled) at ε_c."""
    sections = by_section([r for r in rows if r["protocol_pgd"] is not None or r["worst_accuracy"] is not None])
    if not sections:
        return {}
    widest = max(len(here) for here in sections.values())
    fig, axes = panel_grid(len(sections), figsize_each=(max(5.0, 0.8 * widest + 1.8), 4.6), ncols_max=2)
    for ax, ((dataset, model, norm, eps_mode, eps), here) in zip(axes, sections.items()):
        tops = []
        for i, r in enumerate(here):
            colour = method_style(r["loss"], r["training"])["color"]
            top = max(_bar(ax, i - 0.2, r, "protocol_pgd", colour, color="white", hatch="////"),
                      _bar(ax, i + 0.2, r, "worst_accuracy", colour, color=colour))
            ax.text(i, top + 0.5, r["verdict"], ha="center", va="bottom", fontsize=7,
                    color=VERDICT_COLOURS.get(r["verdict"], "black"))
            tops.append(top + 6.0)
        ax.set_xticks(range(len(here)), [textwrap.fill(r["method"], 20) for r in here], rotation=35, ha="right",
                      rotation_mode="anchor", fontsize=7)
        ax.set_xlim(-0.6, len(here) - 0.4)
        ax.set_title(f"{dataset} / {model}\n{norm_name(norm)}, {eps_mode} ε_c = {eps}, n = {joined(here, 'n')}",
                     fontsize=8)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, min(108.0, max(tops + [20.0])))
        ax.grid(alpha=0.3, axis="y")
    steps = joined(rows, "protocol_steps")
    handles = [Patch(facecolor="white", edgecolor="0.3", hatch="////", label=f"paper protocol PGD-{steps} "
                     "(attack loss ce)"),
               Patch(facecolor="0.3", edgecolor="0.3", label="worst case over every attack (headline)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False,
               title="error bars: 95 % Wilson interval", title_fontsize=7)
    radii = sorted({(k[2], k[3], k[4]) for k in sections})
    nbsp = "\u00a0"  # keeps "ε_c = 0.1" on one line when the title wraps
    where = (f" at {norm_name(radii[0][0])}, {radii[0][1]} ε_c{nbsp}={nbsp}{radii[0][2]}" if len(radii) == 1
             else " at the checking radius ε_c")
    figure_title(fig, f"Fig. 7: paper-protocol PGD vs worst-case accuracy{where}", results)
    return figure_files(fig, results.root, "fig7-worst-case")
