"""The paper's figures from a results directory: Fig. 2 (accuracy vs μ_T), Fig. 3 (latent space),
Figs. 4-6 (accuracy vs ε under PGD, TGSM and JSMA, :mod:`robench.report.attack_figures`).

Follows Ali, Migliorati, Bianchi and Magli, "Beyond cross-entropy: learning highly separable
feature distributions for robust and accurate classification", Figs. 2-6, drawn with the shared
styles and helpers of :mod:`robench.report.plotting` under matplotlib's default style. A directory
holding only an attacks CSV gets its attack figures from :mod:`robench.report.bare_csv`.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib.style
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file

from robench.errors import RobenchError
from robench.report.attack_figures import (ATTACK_FIGURES, attack_figure, is_protocol_row, panel_rows)
from robench.report.bare_csv import bare_csv_figures
from robench.report.intervals import wilson_pct
from robench.report.loader import (Results, column_order, method_label, method_order, variant_labels)
from robench.report.plotting import (figure_files, figure_title, interval_line, method_style, panel_grid, shared_legend)

__all__ = ["ATTACK_FIGURES", "is_protocol_row", "panel_rows", "render_figures", "simplex_projection"]

# --- Fig. 2: accuracy vs μ_T ----------------------------------------------------------------------------


def _runs_frame(runs) -> pd.DataFrame:
    """One row per run: best test accuracy (%), its count on n_test images (NaN where run.json lacks n_test)."""
    return pd.DataFrame({"training": [r.training for r in runs], "acc": [100.0 * r.best for r in runs],
                         "k": [round(r.best * r.n_test) if r.n_test else np.nan for r in runs],
                         "n": [r.n_test if r.n_test else np.nan for r in runs]})


def mu_figure(results: Results) -> dict[Path, bytes]:
    """Best test accuracy (%) vs μ_T/σ_T for GCCS (log x), cross-entropy as a horizontal line; 95 % bands."""
    gccs = [r for r in results.runs if r.loss == "gccs" and isinstance(r.hyper.get("mu"), (int, float))]
    mus = {}
    for run in gccs:
        mus.setdefault((run.dataset, run.model), set()).add(run.hyper["mu"])
    panels = sorted((c for c in mus if len(mus[c]) > 1), key=lambda c: column_order(*c))
    if not panels:
        return {}
    fig, axes = panel_grid(len(panels))
    for ax, (dataset, model) in zip(axes, panels):
        here = [r for r in gccs if (r.dataset, r.model) == (dataset, model)]
        frame = _runs_frame(here)
        frame["variant"] = variant_labels([r.hyper for r in here], ignore=("mu",))
        frame["x"] = [r.hyper["mu"] / float(r.hyper.get("sigma", 1.0)) for r in here]
        curves = frame.groupby(["training", "variant", "x"]).agg(
            mean=("acc", "mean"), min=("acc", "min"), max=("acc", "max"), k=("k", lambda s: s.sum(min_count=len(s))),
            n=("n", lambda s: s.sum(min_count=len(s))), seeds=("acc", "size")).reset_index()
        curves["low"], curves["high"] = wilson_pct(curves["k"].to_numpy(float), curves["n"].to_numpy(float))
        seen = {}
        for training, variant in sorted(set(zip(curves["training"], curves["variant"])),
                                        key=lambda k: method_order("gccs", *k)):
            curve = curves[(curves["training"] == training) & (curves["variant"] == variant)]
            style = method_style("gccs", training, seen.get(training, 0) if variant else 0)
            seen[training] = seen.get(training, 0) + 1
            spread = (curve["min"].tolist(), curve["max"].tolist()) if (curve["seeds"] > 1).any() else None
            interval_line(ax, curve["x"].tolist(), curve["mean"].tolist(), curve["low"].tolist(),
                          curve["high"].tolist(), style, method_label("gccs", training, variant), spread=spread,
                          linewidth=1.6)
        for training in ("regular", "finetune"):
            ce = [r for r in results.runs if (r.loss, r.training, r.dataset, r.model) == ("ce", training, dataset, model)]
            if ce:
                style, pooled = method_style("ce", training), _runs_frame(ce)[["k", "n"]].sum()
                mean = float(np.mean([100.0 * r.best for r in ce]))
                ax.axhline(mean, color=style["color"], linestyle=style["linestyle"], linewidth=1.2,
                           label=method_label("ce", training) + (f", mean of {len(ce)}" if len(ce) > 1 else ""))
                if all(r.n_test for r in ce):
                    ax.axhspan(*wilson_pct(pooled["k"], pooled["n"]), color=style["color"], alpha=0.08, linewidth=0)
        ax.set_xscale("log")
        ax.set_title(f"{dataset} / {model}", fontsize=9)
        ax.set_xlabel(r"$\mu_T / \sigma_T$ (log scale)")
        ax.set_ylabel("best test accuracy (%)")
        ax.grid(alpha=0.3, which="both")
    shared_legend(fig, axes)
    figure_title(fig, r"Fig. 2: GCCS accuracy vs $\mu_T / \sigma_T$ (band: 95 % Wilson interval on the test set)",
                 results)
    return figure_files(fig, results.root, "fig2-mu")


# --- Fig. 3: latent space -------------------------------------------------------------------------------

_VERTICES = np.array([[math.cos(math.pi / 2 + 2 * math.pi * k / 3), math.sin(math.pi / 2 + 2 * math.pi * k / 3)]
                      for k in range(3)])
"""Vertices of an equilateral triangle: class axis e_ck is drawn along _VERTICES[k]."""
RUNS_PER_ROW = 3


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


def _attack_text(meta: dict) -> str:
    norm = {"Linf": "L∞"}.get(meta.get("norm", "Linf"), meta.get("norm", "Linf"))
    return f"{meta.get('attack', '?').upper()}, ε = {meta.get('eps', '?')} ({norm}, {meta.get('eps_mode', '?')})"


def latent_figure(results: Results) -> dict[Path, bytes]:
    """A pair of panels (clean, attacked) per run, in Table I order, :data:`RUNS_PER_ROW` runs per row, every
    panel on one shared scale; points coloured by true class."""
    if not results.latent:
        return {}
    snaps = [_load_latent(p) for p in results.latent]
    snaps.sort(key=lambda s: method_order(s["meta"].get("loss", ""), s["meta"].get("training", ""))
               + column_order(s["meta"].get("dataset", ""), s["meta"].get("model", "")) + (s["path"].name,))
    several = len({(s["meta"].get("dataset"), s["meta"].get("model")) for s in snaps}) > 1
    names = {run.name: run.class_names for run in results.runs}
    points = [{key: simplex_projection(s[key], s["classes"]) for key in ("z_clean", "z_attacked")} for s in snaps]
    reach = max([float(np.abs(p).max()) for pair in points for p in pair.values() if len(p)] or [1.0])
    every = np.concatenate([p for pair in points for p in pair.values()] + [reach * _VERTICES, np.zeros((1, 2))])
    pad = 0.05 * reach
    xlim, ylim = (every[:, 0].min() - pad, every[:, 0].max() + pad), (every[:, 1].min() - pad, every[:, 1].max() + pad)
    xticks, yticks = (MaxNLocator(5, steps=[1, 2, 2.5, 5, 10]).tick_values(*lim) for lim in (xlim, ylim))
    per_row = min(len(snaps), RUNS_PER_ROW)
    nrows = math.ceil(len(snaps) / per_row)
    fig = Figure(figsize=(4.5 * per_row + 0.6, 2.75 * nrows + 1.6), layout="constrained")
    subfigs = fig.subfigures(nrows, per_row, squeeze=False, wspace=0.02, hspace=0.02).ravel()
    for sub in subfigs[len(snaps):]:
        sub.set_visible(False)
    handles = {}
    for i, (sub, snap, pair) in enumerate(zip(subfigs, snaps, points)):
        meta = snap["meta"]
        title = method_label(meta.get("loss", "?"), meta.get("training", "?"))
        if several:
            title += f" — {meta.get('dataset')} / {meta.get('model')}"
        sub.suptitle(textwrap.fill(title, 48), fontsize=9)
        class_names = names.get(meta.get("run"), ())
        axes = sub.subplots(1, 2, sharex=True, sharey=True)
        for j, (ax, key) in enumerate(zip(axes, ("z_clean", "z_attacked"))):
            for k, c in enumerate(snap["classes"]):
                ax.plot([0, reach * _VERTICES[k, 0]], [0, reach * _VERTICES[k, 1]], color="0.75", linewidth=0.8)
                mask = snap["labels"] == c
                name = class_names[c] if c < len(class_names) else str(c)
                label = f"class {c}" + (f" ({name})" if name != str(c) else "")
                handles[label] = ax.scatter(pair[key][mask, 0], pair[key][mask, 1], s=3, alpha=0.5, color=f"C{k}",
                                            linewidths=0, label=label, rasterized=True)
                # rasterized: as vectors, the PDF would hold each point's offset from matplotlib's transforms,
                # whose last digit varies between runs (and 5,000 vector markers make a slow file)
            ax.set_xticks(xticks)
            ax.set_yticks(yticks)
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=6)
            ax.grid(alpha=0.2)
            ax.set_title("clean" if j == 0 else _attack_text(meta), fontsize=7)
            if i // per_row == nrows - 1 or i + per_row >= len(snaps):
                ax.set_xlabel("x (latent units)", fontsize=7)
            if j == 0 and i % per_row == 0:
                ax.set_ylabel("y (latent units)", fontsize=7)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=len(handles), fontsize=8,
               markerscale=4, frameon=False)
    figure_title(fig, "Fig. 3: latent space of three classes, projected onto the plane of their class axes "
                      "(z_c0·v0 + z_c1·v1 + z_c2·v2, grey: the class axes), every panel on one scale", results)
    return figure_files(fig, results.root, "fig3-latent")


def render_figures(results: Results) -> dict[Path, bytes]:
    """Every figure the results allow, as file bytes: Fig. 2 (μ sweep), Fig. 3 (latent), Figs. 4-6 (attacks);
    for a bare attacks CSV, an accuracy-vs-ε figure per attack (:func:`robench.report.bare_csv.bare_csv_figures`)."""
    with matplotlib.style.context("default"):
        if results.csv_only:
            return bare_csv_figures(results)
        files = mu_figure(results) | latent_figure(results)
        for attack, stem, number in ATTACK_FIGURES:
            files |= attack_figure(results, attack, stem, number)
    return files
