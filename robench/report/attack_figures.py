"""Figs. 4-6 of the paper: accuracy vs ε under PGD, TGSM and JSMA, one line per method with its 95 % interval.

Follows Ali, Migliorati, Bianchi and Magli, "Beyond cross-entropy", Figs. 4-6. A figure has a row
of panels per (dataset, model, norm) and a column per training mode (regular training; fine-tuning,
with cross-entropy as the reference both start from), so near-identical methods do not pile up in one
panel; no line, panel or axis mixes norms or ε modes. Lines are the mean over seeds, the band the
Wilson interval of the pooled count, error bars the seeds' min-max (:mod:`robench.report.intervals`);
the y range is fitted to the data when every line sits in a narrow band.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from robench.report.intervals import wilson_pct
from robench.report.loader import Results, column_order, method_label, method_order
from robench.report.plotting import (eps_label, figure_files, figure_title, fitted_ylim, interval_line, method_style,
                                     shared_legend)

ATTACK_FIGURES = (("pgd", "fig4-pgd", "Fig. 4"), ("tgsm", "fig5-tgsm", "Fig. 5"), ("jsma", "fig6-jsma", "Fig. 6"))
PROTOCOL_LOSSES = {"pgd": "ce", "tgsm": "ce", "jsma": "saliency"}
"""The attacks of Figs. 4-6 and the attack loss each uses in the paper's protocol."""
NORM_ORDER = {"Linf": 0, "L2": 1}
TRAINING_PANELS = {"regular": "regular training", "finetune": "fine-tuning (from cross-entropy)"}


def is_protocol_row(row: dict) -> bool:
    """Whether an attacks.csv row may be drawn in Figs. 4-6: one of the paper's attacks with its protocol
    loss (:data:`PROTOCOL_LOSSES`), one restart and no ``source``. This leaves out everything
    ``robench audit`` adds besides protocol PGD-5 and TGSM-5: ``worst`` rows, APGD, Square and transfer,
    the margin and DLR losses and PGD with restarts; its PGD at absolute ε is left out by the panel's
    preference for relative ε and other step counts by the panel's single configuration (:func:`panel_rows`).
    """
    return (PROTOCOL_LOSSES.get(row["attack"]) == row["attack_loss"] and str(row["restarts"] or "1") == "1"
            and not row.get("source"))


def _choose(rows: list[dict], column: str, preferred: str | None = None) -> list[dict]:
    values = sorted({r[column] for r in rows})
    value = preferred if preferred in values else values[0]
    return [r for r in rows if r[column] == value]


_CONFIG = ("eps_mode", "norm", "steps", "step_size", "restarts", "n", "targeted", "attack_seed")


def _one_config(rows: list[dict]) -> list[dict]:
    """The rows of the most common attack configuration (steps, n, ...), so curves compare like with like."""
    counts = defaultdict(int)
    for row in rows:
        counts[tuple(row.get(c, "") for c in _CONFIG)] += 1
    best = sorted(counts, key=lambda k: (-counts[k], k))[0]
    return [r for r in rows if tuple(r.get(c, "") for c in _CONFIG) == best]


def panel_rows(rows: list[dict], dataset: str, model: str, attack: str,
               norm: str | None = None) -> tuple[list[dict], list[dict], int]:
    """The native and ART rows drawn in one panel of an attack figure, and how many native protocol
    rows were left out for another configuration.

    Only protocol rows (:func:`is_protocol_row`: the paper's attack loss, ce for PGD and TGSM, one
    restart, no audit-only attack) of one norm (``norm``, else L∞ where there is any); of those the
    native backend, the independent sweep (the paper's protocol) where there is one, relative ε where
    there is any, and the most common configuration (steps, step size, n, ...), so the curves compare
    like with like; ART rows of the same norm, ε mode and attack loss, as a cross-check.
    """
    here = [r for r in rows if (r["attack"], r["dataset"], r["model"]) == (attack, dataset, model)
            and is_protocol_row(r) and (norm is None or r.get("norm", "Linf") == norm)]
    if here and norm is None:
        here = _choose(here, "norm", "Linf")
    native = [r for r in here if r["backend"] == "native"]
    if not native:
        return [], [], 0
    native = _choose(_choose(native, "sweep", "independent"), "eps_mode", "relative")
    kept = _one_config(native)
    art = [r for r in here if r["backend"] == "art" and r["eps_mode"] == kept[0]["eps_mode"]]
    return kept, (_one_config(_choose(art, "sweep", kept[0]["sweep"])) if art else []), len(native) - len(kept)


def curve_frame(rows: list[dict], keys: list[str]) -> pd.DataFrame:
    """One row per (``keys``..., ε): the mean, min and max accuracy (%) over the rows (seeds), the pooled
    count (``k_pooled`` of ``n_pooled``) and its 95 % Wilson interval (``low``, ``high``), sorted by keys and ε."""
    frame = pd.DataFrame({**{k: [r[k] for r in rows] for k in keys}, "eps": [float(r["eps"]) for r in rows],
                          "_acc": [100.0 * float(r["accuracy"]) for r in rows],
                          "_k": [int(r["n_correct"]) for r in rows], "_n": [int(r["n"]) for r in rows]})
    curves = frame.groupby(keys + ["eps"], sort=True).agg(mean=("_acc", "mean"), min=("_acc", "min"),
                                                         max=("_acc", "max"), k_pooled=("_k", "sum"),
                                                         n_pooled=("_n", "sum"), seeds=("_acc", "size")).reset_index()
    curves["low"], curves["high"] = wilson_pct(curves["k_pooled"].to_numpy(), curves["n_pooled"].to_numpy())
    return curves


def curve_values(curves: pd.DataFrame) -> list[float]:
    """Every value a :func:`curve_frame` draws (means and interval bounds), for :func:`fitted_ylim`."""
    return curves["mean"].tolist() + curves["low"].dropna().tolist() + curves["high"].dropna().tolist()


def draw_curves(ax, curves: pd.DataFrame, keys: list[str], style_of, label_of, bars: bool = False, **line) -> None:
    """Draw each ``keys`` group of :func:`curve_frame` in the order given, with its interval as a band, or with
    ``bars`` (a zoomed axis, where bands would cover each other) as error bars dodged sideways."""
    groups = list(curves.groupby(keys, sort=False))
    span = float(curves["eps"].max() - curves["eps"].min()) or 1.0
    for i, (key, curve) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        spread = (curve["min"].tolist(), curve["max"].tolist()) if (curve["seeds"] > 1).any() else None
        dodge = 0.012 * span * (i - (len(groups) - 1) / 2) if bars else 0.0
        interval_line(ax, curve["eps"].tolist(), curve["mean"].tolist(), curve["low"].tolist(),
                      curve["high"].tolist(), style_of(key), label_of(key), spread=spread, bars=bars, dodge=dodge,
                      **line)


def budget_text(first: dict, pixels: int | None = None) -> str:
    """What one attack may do: ``5 steps``; for JSMA the pixels it may change, min(steps, pixels)."""
    if first["attack"] != "jsma":
        return f"{first['steps']} steps"
    steps = int(first["steps"] or 0)
    if pixels:
        return f"≤ {min(steps, pixels)} pixels changed (min of {steps} steps, {pixels} pixels)"
    return f"≤ {steps} pixels changed (one per step)"


def small_n_lines(n) -> list[str]:
    """A panel's visible warning when n ≤ 100 images (one image is a point of accuracy or more); [] above."""
    if int(n) > 100:
        return []
    return [f"⚠ n ≤ 100: one image is {100 / int(n):.1f} point{'' if int(n) == 100 else 's'}"]


def method_curves(rows: list[dict], variants: dict[str, str]) -> pd.DataFrame:
    """:func:`curve_frame` per method (loss, training, variant), in Table I order (column ``rank``)."""
    rows = [dict(r, variant=variants.get(Path(r["checkpoint"]).name, "")) for r in rows]
    keys = ["loss", "training", "variant"]
    curves = curve_frame(rows, keys)
    order = sorted({tuple(k) for k in curves[keys].itertuples(index=False)}, key=lambda k: method_order(*k))
    curves["rank"] = [order.index(tuple(k)) for k in curves[keys].itertuples(index=False)]
    return curves.sort_values(["rank", "eps"], kind="stable")


def _draw_methods(ax, curves: pd.DataFrame, art: bool, bars: bool) -> None:
    keys = ["loss", "training", "variant"]
    seen, styles = defaultdict(int), {}
    for key in dict.fromkeys(tuple(k) for k in curves[keys].itertuples(index=False)):
        styles[key] = method_style(key[0], key[1], seen[key[:2]] if key[2] else 0)
        seen[key[:2]] += 1
    extra = ({"linewidth": 0.9, "linestyle": ":", "markerfacecolor": "none", "markersize": 3, "band": False}
             if art else {"linewidth": 1.6, "bars": bars})
    draw_curves(ax, curves, keys, lambda k: styles[k], lambda k: method_label(*k) + (" (ART)" if art else ""),
                **extra)


def training_modes(native: list[dict]) -> list[str]:
    """The panel columns of a row of panels: the training modes, regular first, then fine-tuning."""
    return sorted({r["training"] for r in native}, key=lambda t: (list(TRAINING_PANELS).index(t)
                                                                 if t in TRAINING_PANELS else 2, t))


def in_column(row: dict, mode: str, modes: list[str]) -> bool:
    """Whether ``row`` is drawn in the ``mode`` column: its own mode, and cross-entropy's regular run (the
    reference fine-tuning starts from) in the fine-tuning column too."""
    return len(modes) == 1 or row["training"] == mode or (
        mode == "finetune" and (row["loss"], row["training"]) == ("ce", "regular"))


def attack_figure(results: Results, attack: str, stem: str, number: str) -> dict[Path, bytes]:
    """Accuracy (%) vs ε for one attack: a row of panels per dataset x model x norm, a column per training
    mode, a line per method (see :func:`panel_rows`), each with its 95 % interval."""
    rows = [r for r in results.attacks if r["attack"] == attack and is_protocol_row(r)]
    panels = sorted({(r["dataset"], r["model"], r.get("norm", "Linf")) for r in rows if r["backend"] == "native"},
                    key=lambda c: column_order(*c[:2]) + (NORM_ORDER.get(c[2], 2), c[2]))
    if not panels:
        return {}
    variants = {run.name: run.variant for run in results.runs}
    pixels = {(run.dataset, run.model): int(run.input_shape[0] * run.input_shape[1] * run.input_shape[2])
              for run in results.runs if len(run.input_shape) == 3}
    chosen = [panel_rows(rows, *panel[:2], attack, norm=panel[2]) for panel in panels]
    groups = [training_modes(native) for native, _, _ in chosen]
    ncols = max(len(g) for g in groups)
    fig = Figure(figsize=(max(5.6 * ncols, 6.4), 4.2 * len(panels) + 1.9), layout="constrained")
    grid = fig.subplots(len(panels), ncols, squeeze=False, sharey="row")
    drawn = []
    for axes, (dataset, model, norm), (native, art, omitted), modes in zip(grid, panels, chosen, groups):
        first = native[0]
        curves = {mode: method_curves([r for r in native if in_column(r, mode, modes)], variants) for mode in modes}
        (low, high), fitted = fitted_ylim([v for c in curves.values() for v in curve_values(c)])
        for ax, mode in zip(axes, modes):
            _draw_methods(ax, curves[mode], art=False, bars=fitted)
            art_note = f", {omitted} rows of other settings not shown" if omitted else ""
            art_here = [r for r in art if in_column(r, mode, modes)]
            if art_here:
                art_note += ", ART dotted" + ("" if art[0]["sweep"] == first["sweep"] else f" ({art[0]['sweep']})")
                _draw_methods(ax, method_curves(art_here, variants), art=True, bars=False)
            title = f"{dataset} / {model}" + (f" — {TRAINING_PANELS.get(mode, mode)}" if len(modes) > 1 else "")
            detail = (f"{first['sweep']} sweep, {budget_text(first, pixels.get((dataset, model)))}, n={first['n']}, "
                      f"attack loss {first['attack_loss']}{art_note}")
            ax.set_title("\n".join([title] + textwrap.wrap(detail, 75) + small_n_lines(first["n"])), fontsize=8)
            ax.set_xlabel(eps_label(norm, first["eps_mode"]))
            ax.grid(alpha=0.3)
            drawn.append(ax)
        axes[0].set_ylim(low, high)
        axes[0].set_ylabel("accuracy (%)" + (" — axis zoomed to the data;\nintervals as bars, dodged sideways"
                                             if fitted else ""))
        for ax in axes[len(modes):]:
            ax.set_visible(False)
    shared_legend(fig, drawn, ncols=ncols if ncols > 1 else 3)  # with two columns: regular left, fine-tuning right
    targeted = "targeted " if first["targeted"] == "true" else ""
    figure_title(fig, f"{number}: accuracy under {targeted}{attack.upper()} attack vs ε, with 95 % Wilson "
                      "intervals", results)
    return figure_files(fig, results.root, stem)
