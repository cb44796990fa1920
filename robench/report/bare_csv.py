"""The report of a bare attacks CSV (what ``robench attack --out`` wrote; no run.json, no manifest).

Without run metadata there is no Table I, no Fig. 2 or 3 and no audit table; what the CSV alone
allows is an accuracy-vs-ε figure per attack (Figs. 4-6 for PGD, TGSM and JSMA, ``fig-<attack>``
for the others; a panel per attack configuration measured at two ε or more) and a robustness table (``robustness.csv``, ``robustness.md``: accuracy per
checkpoint and attack configuration at each ε, with its 95 % Wilson interval). Results stay bound
to what they measured: rows are grouped by (checkpoint, model_sha256), so two models at one path are
two lines and two rows; with no run.json to say which is current, every identity is shown, named by
its path's last component and, where a path has several, by a short hash.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from robench.report.attack_figures import (ATTACK_FIGURES, NORM_ORDER, budget_text, curve_frame, curve_values,
                                           draw_curves, small_n_lines)
from robench.report.loader import Results, column_order
from robench.report.plotting import (cycle_style, eps_label, figure_files, figure_title, fitted_ylim, method_style,
                                     panel_grid, shared_legend)

SKIPPED_PARTS = ("Table I", "Fig. 2 (accuracy vs μ_T)", "Fig. 3 (latent space)",
                 "the audit tables (robustness per method, audit.md) and Fig. 7")
"""What a report cannot show without run metadata (run.json, manifest.json)."""
LINE_COLUMNS = ("backend", "attack_loss", "steps", "step_size", "restarts", "sweep", "given", "n", "attack_seed",
                "targeted", "source")
"""The columns besides the identity that tell two lines (configurations) of one attack apart."""


def identity_labels(rows: list[dict]) -> dict[tuple[str, str], str]:
    """(checkpoint, model_sha256) -> its label: the path's last component (more of the path where two paths end
    alike), with the hash's first 8 hex digits where one path has several models ("no hash" for robench 0.1's)."""
    paths = sorted({r["checkpoint"] for r in rows})
    names = {}
    for path in paths:
        parts = Path(path).parts or (path,)
        depth = 1
        while depth < len(parts) and sum(Path(p).parts[-depth:] == parts[-depth:] for p in paths) > 1:
            depth += 1
        names[path] = "/".join(parts[-depth:])
    identities = sorted({(r["checkpoint"], r["model_sha256"]) for r in rows})
    several = {path for path in paths if sum(p == path for p, _ in identities) > 1}
    return {(path, sha): names[path] + (f" ({sha[:8] or 'no hash'})" if path in several else "")
            for path, sha in identities}


def attack_order(attack: str) -> tuple:
    known = [a for a, _, _ in ATTACK_FIGURES]
    return (known.index(attack) if attack in known else len(known) + (attack == "worst"), attack)


def _part(column: str, value: str) -> str:
    texts = {"backend": value if value != "art" else "ART", "attack_loss": f"attack loss {value}",
             "steps": f"{value} steps", "step_size": f"step {value}", "restarts": f"{value} restart{'' if value == '1' else 's'}",
             "sweep": f"{value} sweep", "given": f"on survivors of {value}", "n": f"n={value}",
             "attack_seed": f"seed {value}", "targeted": "targeted" if value == "true" else "untargeted",
             "source": f"from {Path(value).name}"}
    return texts[column]


def config_text(row: dict) -> str:
    """A panel's attack configuration in words, e.g. ``5 steps, native, attack loss ce, step 0.5, ...``."""
    if row["attack"] == "worst":
        return f"per image, over every attack run at that ε, seed {row['attack_seed']}, n={row['n']}"
    parts = [budget_text(row)] if row["steps"] else []
    parts += [_part(c, row[c]) for c in LINE_COLUMNS if c not in ("steps", "n") and row[c] not in ("", None)]
    return ", ".join(parts + [f"n={row['n']}"])


def panel_key(row: dict) -> tuple:
    """Rows drawn in one panel: one dataset x model, norm, ε mode and attack configuration (a worst row's
    ``source``, the attacks it combines, varies with ε and stays out)."""
    skip = ("source",) if row["attack"] == "worst" else ()
    return (row["dataset"], row["model"], row["norm"], row["eps_mode"]) + tuple(
        "" if c in skip else row[c] for c in LINE_COLUMNS)


def bare_csv_figures(results: Results) -> dict[Path, bytes]:
    """An accuracy-vs-ε figure per attack of a bare CSV: a panel per (dataset, model, norm, ε mode, attack
    configuration) with at least two ε, a line per checkpoint identity, each with its 95 % interval."""
    labels = identity_labels(results.attacks)
    identities = list(labels)
    methods = {(r["checkpoint"], r["model_sha256"]): (r["loss"], r["training"]) for r in results.attacks}
    unique = len(set(methods.values())) == len(methods) and all(loss for loss, _ in methods.values())
    styles = {i: method_style(*methods[i]) if unique else cycle_style(k, methods[i][1])
              for k, i in enumerate(identities)}
    files = {}
    for attack in sorted({r["attack"] for r in results.attacks}, key=attack_order):
        stem, number = next(((s, n) for a, s, n in ATTACK_FIGURES if a == attack), (f"fig-{attack}", ""))
        rows = [dict(r, identity=labels[(r["checkpoint"], r["model_sha256"])], panel=panel_key(r))
                for r in results.attacks if r["attack"] == attack]
        panels = sorted((p for p in {r["panel"] for r in rows} if len({r["eps"] for r in rows if r["panel"] == p}) > 1),
                        key=lambda p: column_order(*p[:2]) + (NORM_ORDER.get(p[2], 2), p[3] != "relative") + p[2:])
        if not panels:
            continue
        fig, axes = panel_grid(len(panels), figsize_each=(5.4, 3.8), ncols_max=2)
        for ax, panel in zip(axes, panels):
            here = [r for r in rows if r["panel"] == panel]
            keys = ["identity", "checkpoint", "model_sha256"]
            curves = curve_frame(here, keys)
            curves["rank"] = [identities.index((c, s)) for c, s in zip(curves["checkpoint"], curves["model_sha256"])]
            curves = curves.sort_values(["rank", "eps"], kind="stable")
            (low, high), fitted = fitted_ylim(curve_values(curves))
            draw_curves(ax, curves, keys, lambda k: styles[(k[1], k[2])], lambda k: k[0], bars=fitted, linewidth=1.6)
            ax.set_ylim(low, high)
            ax.set_title("\n".join([f"{panel[0]} / {panel[1]}"] + textwrap.wrap(config_text(here[0]), 80)
                                    + small_n_lines(here[0]["n"])), fontsize=8)
            ax.set_xlabel(eps_label(panel[2], panel[3]))
            ax.set_ylabel("accuracy (%)" + (" — axis zoomed to the data;\nintervals as bars, dodged sideways"
                                            if fitted else ""))
            ax.grid(alpha=0.3)
        shared_legend(fig, axes, ncols=2)
        what = "the worst case over every attack" if attack == "worst" else f"{attack.upper()} attack"
        figure_title(fig, f"{number + ': ' if number else ''}accuracy under {what} vs ε, per checkpoint, with 95 % "
                          "Wilson intervals", results)
        files |= figure_files(fig, results.root, stem)
    return files
