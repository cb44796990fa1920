"""The paper's figures from a results directory: Fig. 2 (accuracy vs μ_T), Fig. 3 (latent space),
Figs. 4-6 (accuracy vs ε under PGD, TGSM and JSMA).

Follows Ali, Migliorati, Bianchi and Magli, "Beyond cross-entropy: learning highly separable
feature distributions for robust and accurate classification", Figs. 2-6, drawn with the shared
styles and helpers of :mod:`robench.report.plotting` under matplotlib's default style.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from pathlib import Path

import matplotlib.style
import numpy as np
from matplotlib.figure import Figure
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file

from robench.errors import RobenchError
from robench.report.loader import Results, column_order, method_label, method_order, variant_labels
from robench.report.plotting import (EPS_LABELS, figure_files, figure_title, mean_band, method_style, panel_grid,
                                     shared_legend)

ATTACK_FIGURES = (("pgd", "fig4-pgd", "Fig. 4"), ("tgsm", "fig5-tgsm", "Fig. 5"), ("jsma", "fig6-jsma", "Fig. 6"))

# --- Figs. 4-6: accuracy vs ε -------------------------------------------------------------------------


PROTOCOL_LOSSES = {"pgd": "ce", "tgsm": "ce", "jsma": "saliency"}
"""The attacks of Figs. 4-6 and the attack loss each uses in the paper's protocol."""


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


_CONFIG = ("eps_mode", "steps", "step_size", "restarts", "n", "targeted", "attack_seed")


def _one_config(rows: list[dict]) -> list[dict]:
    """The rows of the most common attack configuration (steps, n, ...), so curves compare like with like."""
    counts = defaultdict(int)
    for row in rows:
        counts[tuple(row[c] for c in _CONFIG)] += 1
    best = sorted(counts, key=lambda k: (-counts[k], k))[0]
    return [r for r in rows if tuple(r[c] for c in _CONFIG) == best]


def _attack_panel(ax, rows: list[dict], variants: dict[str, str], art: bool) -> None:
    curves = defaultdict(lambda: defaultdict(list))
    for row in rows:
        variant = variants.get(Path(row["checkpoint"]).name, "")
        curves[(row["loss"], row["training"], variant)][row["eps"]].append(100.0 * row["accuracy"])
    seen = defaultdict(int)
    for key in sorted(curves, key=lambda k: method_order(*k)):
        style = method_style(key[0], key[1], seen[key[:2]] if key[2] else 0)
        seen[key[:2]] += 1
        eps = sorted(curves[key])
        label = method_label(*key) + (" (ART)" if art else "")
        extra = ({"linewidth": 0.9, "linestyle": ":", "markerfacecolor": "none", "markersize": 3} if art
                 else {"linewidth": 1.6})
        mean_band(ax, eps, [curves[key][e] for e in eps], style, label, **extra)


def panel_rows(rows: list[dict], dataset: str, model: str, attack: str) -> tuple[list[dict], list[dict], int]:
    """The native and ART rows drawn in one panel of an attack figure, and how many native protocol
    rows were left out for another configuration.

    Only protocol rows (:func:`is_protocol_row`: the paper's attack loss, ce for PGD and TGSM, one
    restart, no audit-only attack); of those the native backend, the independent sweep (the
    paper's protocol) where there is one, relative ε where there is any, and the most common
    configuration (steps, step size, n, ...), so the curves compare like with like; ART rows of
    the same attack loss, as a cross-check.
    """
    here = [r for r in rows if (r["attack"], r["dataset"], r["model"]) == (attack, dataset, model)
            and is_protocol_row(r)]
    native = [r for r in here if r["backend"] == "native"]
    if not native:
        return [], [], 0
    native = _choose(_choose(native, "sweep", "independent"), "eps_mode", "relative")
    kept = _one_config(native)
    art = [r for r in here if r["backend"] == "art" and r["eps_mode"] == kept[0]["eps_mode"]]
    return kept, (_one_config(_choose(art, "sweep", kept[0]["sweep"])) if art else []), len(native) - len(kept)


def attack_figure(results: Results, attack: str, stem: str, number: str) -> dict[Path, bytes]:
    """Accuracy (%) vs ε for one attack: a panel per dataset x model, a line per method (see :func:`panel_rows`)."""
    rows = [r for r in results.attacks if r["attack"] == attack and is_protocol_row(r)]
    panels = sorted({(r["dataset"], r["model"]) for r in rows if r["backend"] == "native"},
                    key=lambda c: column_order(*c))
    if not panels:
        return {}
    variants = {run.name: run.variant for run in results.runs}
    fig, axes = panel_grid(len(panels))
    for ax, (dataset, model) in zip(axes, panels):
        native, art, omitted = panel_rows(rows, dataset, model, attack)
        first = native[0]
        _attack_panel(ax, native, variants, art=False)
        art_note = f", {omitted} rows of other settings not shown" if omitted else ""
        if art:
            art_note += ", ART dotted" + ("" if art[0]["sweep"] == first["sweep"] else f" ({art[0]['sweep']})")
            _attack_panel(ax, art, variants, art=True)
        ax.set_title(f"{dataset} / {model}\n{first['sweep']} sweep, {first['steps']} steps, n={first['n']}, "
                     f"{first['attack_loss']} loss{art_note}", fontsize=8)
        ax.set_xlabel(EPS_LABELS.get(first["eps_mode"], f"ε ({first['eps_mode']})"))
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    shared_legend(fig, axes)
    targeted = "targeted " if first["targeted"] == "true" else ""
    figure_title(fig, f"{number}: accuracy under {targeted}{attack.upper()} attack vs ε", results)
    return figure_files(fig, results.root, stem)


# --- Fig. 2: accuracy vs μ_T ----------------------------------------------------------------------------


def mu_figure(results: Results) -> dict[Path, bytes]:
    """Best test accuracy (%) vs μ_T/σ_T for GCCS (log x), cross-entropy as a horizontal line."""
    gccs = [r for r in results.runs if r.loss == "gccs" and isinstance(r.hyper.get("mu"), (int, float))]
    mus = defaultdict(set)
    for run in gccs:
        mus[(run.dataset, run.model)].add(run.hyper["mu"])
    panels = sorted((c for c in mus if len(mus[c]) > 1), key=lambda c: column_order(*c))
    if not panels:
        return {}
    fig, axes = panel_grid(len(panels))
    for ax, (dataset, model) in zip(axes, panels):
        here = [r for r in gccs if (r.dataset, r.model) == (dataset, model)]
        labels = variant_labels([r.hyper for r in here], ignore=("mu",))
        curves = defaultdict(lambda: defaultdict(list))
        for run, variant in zip(here, labels):
            curves[(run.training, variant)][run.hyper["mu"] / float(run.hyper.get("sigma", 1.0))].append(100 * run.best)
        seen = defaultdict(int)
        for training, variant in sorted(curves, key=lambda k: method_order("gccs", *k)):
            style = method_style("gccs", training, seen[training] if variant else 0)
            seen[training] += 1
            x = sorted(curves[(training, variant)])
            mean_band(ax, x, [curves[(training, variant)][v] for v in x], style, method_label("gccs", training, variant),
                  linewidth=1.6)
        for training in ("regular", "finetune"):
            ce = [100 * r.best for r in results.runs if (r.loss, r.training, r.dataset, r.model)
                  == ("ce", training, dataset, model)]
            if ce:
                style = method_style("ce", training)
                ax.axhline(float(np.mean(ce)), color=style["color"], linestyle=style["linestyle"], linewidth=1.2,
                           label=method_label("ce", training) + (f", mean of {len(ce)}" if len(ce) > 1 else ""))
        ax.set_xscale("log")
        ax.set_title(f"{dataset} / {model}", fontsize=9)
        ax.set_xlabel(r"$\mu_T / \sigma_T$ (log scale)")
        ax.set_ylabel("best test accuracy (%)")
        ax.grid(alpha=0.3, which="both")
    shared_legend(fig, axes)
    figure_title(fig, r"Fig. 2: GCCS accuracy vs $\mu_T / \sigma_T$", results)
    return figure_files(fig, results.root, "fig2-mu")


# --- Fig. 3: latent space -------------------------------------------------------------------------------

_VERTICES = np.array([[math.cos(math.pi / 2 + 2 * math.pi * k / 3), math.sin(math.pi / 2 + 2 * math.pi * k / 3)]
                      for k in range(3)])
"""Vertices of an equilateral triangle: class axis e_ck is drawn along _VERTICES[k]."""


def simplex_projection(z: np.ndarray, classes: list[int]) -> np.ndarray:
    """(N, 2) points z_c0 v0 + z_c1 v1 + z_c2 v2 for latent z (N, D): the plane of three class axes."""
    return z[:, classes[:3]] @ _VERTICES[: len(classes[:3])]


def _load_latent(path: Path) -> dict:
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "np") as fh:
            meta = fh.metadata() or {}
        classes = [int(c) for c in meta.get("classes", "").split(",") if c.strip()]
    except (OSError, SafetensorError, ValueError) as exc:
        raise RobenchError(f"cannot read latent snapshot {path}: {exc}") from None
    if ({"z_clean", "z_attacked", "labels"} - set(tensors) or not 1 <= len(classes) <= 3
            or max(classes) >= tensors["z_clean"].shape[-1]):
        raise RobenchError(f"{path} is not a robench latent snapshot (needs z_clean, z_attacked, labels, classes)")
    return {"path": path, "meta": meta, "classes": classes, **tensors}


def latent_figure(results: Results) -> dict[Path, bytes]:
    """A column per run (Table I order), rows clean / attacked; points coloured by true class."""
    if not results.latent:
        return {}
    snaps = [_load_latent(p) for p in results.latent]
    snaps.sort(key=lambda s: method_order(s["meta"].get("loss", ""), s["meta"].get("training", ""))
               + column_order(s["meta"].get("dataset", ""), s["meta"].get("model", "")) + (s["path"].name,))
    several = len({(s["meta"].get("dataset"), s["meta"].get("model")) for s in snaps}) > 1
    attack_of = [f"{m.get('attack', '?').upper()}, ε={m.get('eps', '?')} ({m.get('eps_mode', '')})"
                 for m in (s["meta"] for s in snaps)]
    names = {run.name: run.class_names for run in results.runs}
    fig = Figure(figsize=(2.3 * len(snaps) + 1.6, 5.4), layout="constrained")
    axes = fig.subplots(2, len(snaps), squeeze=False)
    for col, snap in enumerate(snaps):
        meta = snap["meta"]
        title = method_label(meta.get("loss", "?"), meta.get("training", "?"))
        if several:
            title += f"\n{meta.get('dataset')} / {meta.get('model')}"
        class_names = names.get(meta.get("run"), ())
        for row, key in enumerate(("z_clean", "z_attacked")):
            ax = axes[row, col]
            points = simplex_projection(snap[key], snap["classes"])
            reach = float(np.abs(points).max()) if len(points) else 1.0
            for k, c in enumerate(snap["classes"]):
                ax.plot([0, reach * _VERTICES[k, 0]], [0, reach * _VERTICES[k, 1]], color="0.75", linewidth=0.8)
                mask = snap["labels"] == c
                name = class_names[c] if c < len(class_names) else str(c)
                ax.scatter(points[mask, 0], points[mask, 1], s=3, alpha=0.5, color=f"C{k}", linewidths=0,
                           label=f"class {c}" + (f" ({name})" if name != str(c) else ""))
            ax.set_aspect("equal", adjustable="datalim")
            ax.tick_params(labelsize=6)
            if row == 0:
                ax.set_title(textwrap.fill(title, 22), fontsize=8)
            elif len(set(attack_of)) > 1:  # say which attack where the snapshots differ
                ax.set_title(attack_of[col], fontsize=7)
            if col == 0:
                ax.set_ylabel("clean" if row == 0 else attack_of[0] if len(set(attack_of)) == 1 else "attacked",
                              fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8, markerscale=4,
               frameon=False)
    figure_title(fig, "Fig. 3: latent space of three classes, projected onto the plane of their class axes", results)
    return figure_files(fig, results.root, "fig3-latent")


def render_figures(results: Results) -> dict[Path, bytes]:
    """Every figure the results allow, as file bytes: Fig. 2 (μ sweep), Fig. 3 (latent), Figs. 4-6 (attacks)."""
    with matplotlib.style.context("default"):
        files = mu_figure(results) | latent_figure(results)
        for attack, stem, number in ATTACK_FIGURES:
            files |= attack_figure(results, attack, stem, number)
    return files
