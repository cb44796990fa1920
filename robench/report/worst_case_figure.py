"""Fig. 7: paper-protocol PGD vs worst-case accuracy at the audit's checking radius, per method.

The headline robust accuracy is the worst case over every attack (Carlini et al. 2019); the
hatched bar beside it is what the paper's protocol (PGD-5, CE loss) reports.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from robench.report.loader import Results
from robench.report.plotting import figure_files, figure_title, method_style, panel_grid
from robench.report.robustness import VERDICT_COLOURS, by_section, joined


def worst_case_figure(results: Results, rows: list[dict]) -> dict[Path, bytes]:
    """Paired bars per method: paper-protocol PGD (hatched) and worst-case accuracy (filled) at ε_c."""
    sections = by_section([r for r in rows if r["protocol_pgd"] is not None or r["worst_accuracy"] is not None])
    if not sections:
        return {}
    widest = max(len(here) for here in sections.values())
    fig, axes = panel_grid(len(sections), figsize_each=(max(4.4, 0.62 * widest + 1.6), 4.6), ncols_max=2)
    for ax, ((dataset, model, eps_mode, eps), here) in zip(axes, sections.items()):
        for i, r in enumerate(here):
            colour = method_style(r["loss"], r["training"])["color"]
            for dx, values, kw in ((-0.2, r["_pgd"], {"color": "white", "hatch": "////"}),
                                   (0.2, r["_worst"], {"color": colour})):
                if values:
                    mean = float(np.mean(values))
                    spread = [[mean - min(values)], [max(values) - mean]] if len(values) > 1 else None
                    ax.bar(i + dx, mean, 0.4, yerr=spread, edgecolor=colour, linewidth=1.0, capsize=2, **kw)
            top = max(r["_pgd"] + r["_worst"], default=0.0)
            ax.text(i, top + 2, r["verdict"], ha="center", va="bottom", fontsize=7,
                    color=VERDICT_COLOURS.get(r["verdict"], "black"))
        ax.set_xticks(range(len(here)), [textwrap.fill(r["method"], 20) for r in here], rotation=35, ha="right",
                      rotation_mode="anchor", fontsize=7)
        ax.set_xlim(-0.6, len(here) - 0.4)
        ax.set_title(f"{dataset} / {model}\n{eps_mode} ε_c = {eps}, n = {joined(here, 'n')}", fontsize=8)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 108)
        ax.grid(alpha=0.3, axis="y")
    steps = joined(rows, "protocol_steps")
    handles = [Patch(facecolor="white", edgecolor="0.3", hatch="////", label=f"paper protocol PGD-{steps} (CE)"),
               Patch(facecolor="0.3", edgecolor="0.3", label="worst case over every attack (headline)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    radii = sorted({(k[2], k[3]) for k in sections})
    where = f" at {radii[0][0]} ε_c = {radii[0][1]}" if len(radii) == 1 else " at the checking radius ε_c"
    figure_title(fig, f"Fig. 7: paper-protocol PGD vs worst-case accuracy{where}", results)
    return figure_files(fig, results.root, "fig7-worst-case")
