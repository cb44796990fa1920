"""The robustness table of a bare attacks CSV: accuracy per checkpoint and attack at each ε, with 95 % intervals.

``robustness.csv`` is tidy, one row per CSV row (checkpoint identity, attack configuration, norm, ε
mode, ε) with the accuracy in % and its Wilson interval; ``robustness.md`` pivots it, a table per
(dataset, model, norm, ε mode) with a row per checkpoint and attack configuration and a column per ε
(:func:`robench.report.bare_csv.identity_labels` names the checkpoints). Norms and ε modes are never
mixed in one table. Written by ``robench report`` when the directory has no run metadata.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from robench.evaluation.worst import WORST, attack_label
from robench.report.attack_figures import NORM_ORDER
from robench.report.bare_csv import SKIPPED_PARTS, attack_order, identity_labels
from robench.report.formatting import csv_text, md_cell
from robench.report.intervals import (interval_text, noise_note, small_sample_warning, wilson_pct)
from robench.report.loader import Results, column_order, identity_notes
from robench.report.plotting import eps_label

CHECKPOINT_COLUMNS = ["checkpoint", "label", "model_sha256", "dataset", "model", "loss", "training", "seed", "attack",
                      "configuration", "backend", "attack_loss", "norm", "eps_mode", "steps", "step_size", "restarts",
                      "sweep", "given", "n", "attack_seed", "eps", "n_correct", "accuracy", "accuracy_low",
                      "accuracy_high"]
"""Columns of a bare CSV's ``robustness.csv``; accuracy and its 95 % Wilson interval in %."""


def configuration(row: dict) -> str:
    """A row's attack configuration as the CSV's ``worst`` rows name it (``pgd/native/ce/5x1/independent``);
    ``worst case`` for a worst row (the attacks it combines differ with ε; its ``source`` lists them)."""
    if row["attack"] == WORST:
        return "worst case (per image, over every attack at that ε)"
    return attack_label(row)


def checkpoint_frame(results: Results) -> pd.DataFrame:
    """One row per attack row: identity, configuration, ε, accuracy (%) and its 95 % Wilson interval, sorted by
    checkpoint, attack, configuration, norm, ε mode and ε."""
    labels = identity_labels(results.attacks)
    order = list(labels)
    frame = pd.DataFrame(results.attacks)
    frame["label"] = [labels[(c, s)] for c, s in zip(frame["checkpoint"], frame["model_sha256"])]
    frame["configuration"] = [configuration(r) for r in results.attacks]
    frame["n_correct"] = frame["n_correct"].astype(int)
    frame["n"] = frame["n"].astype(int)
    frame["accuracy"] = 100.0 * frame["accuracy"].astype(float)
    frame["accuracy_low"], frame["accuracy_high"] = wilson_pct(frame["n_correct"].to_numpy(), frame["n"].to_numpy())
    frame["sort"] = [(order.index((c, s)), attack_order(a), k, nm, mode, column_order(d, m))
                     for c, s, a, k, nm, mode, d, m in zip(frame["checkpoint"], frame["model_sha256"], frame["attack"],
                                                           frame["configuration"], frame["norm"], frame["eps_mode"],
                                                           frame["dataset"], frame["model"])]
    frame = frame.sort_values(["sort", "n", "attack_seed", "eps"], kind="stable").reset_index(drop=True)
    return frame


def _csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as robustness.csv writes it: ε at full precision (as the attacks CSV), not 4 decimals."""
    return frame.assign(eps=[repr(float(e)) for e in frame["eps"]])[CHECKPOINT_COLUMNS]


def checkpoint_markdown(results: Results, frame: pd.DataFrame) -> str:
    csv_name = results.csv.name if results.csv else "the attacks CSV"
    lines = [f"# Accuracy (%) per checkpoint and attack vs ε — {results.name}", ""]
    if results.scale:
        lines += [f"**{results.scale}**", ""]
    lines += [f"From {csv_name} alone: there is no run metadata here (no run.json, no manifest.json), so this "
              f"report leaves out {', '.join(SKIPPED_PARTS[:-1])} and {SKIPPED_PARTS[-1]}.", ""]
    frame = frame.assign(cell=[interval_text(a, lo, hi) for a, lo, hi in
                               zip(frame["accuracy"], frame["accuracy_low"], frame["accuracy_high"])],
                         row=[f"{label} | {md_cell(conf)} | {n} | {seed}" for label, conf, n, seed in
                              zip(frame["label"], frame["configuration"], frame["n"], frame["attack_seed"])],
                         eps_text=[f"{e:g}" for e in frame["eps"]])
    same = frame.duplicated(["dataset", "model", "norm", "eps_mode", "row", "eps_text"], keep=False)
    frame.loc[same, "row"] = [f"{row} (images {images[:8] or '?'})" for row, images in
                              zip(frame.loc[same, "row"], frame.loc[same, "images_sha256"])]
    sections = frame.groupby(["dataset", "model", "norm", "eps_mode"], sort=False)
    for (dataset, model, norm, eps_mode), here in sorted(sections, key=lambda s: column_order(*s[0][:2]) + (
            NORM_ORDER.get(s[0][2], 2), s[0][3] != "relative") + s[0][2:]):
        table = here.pivot(index="row", columns="eps_text", values="cell")
        columns = [f"{e:g}" for e in sorted(set(here["eps"]))]
        table = table.reindex(index=list(dict.fromkeys(here["row"])), columns=columns).fillna("–")
        lines += [f"## {dataset} {model} — {eps_label(norm, eps_mode)}", ""]
        lines += [f"**{w}**\n" for w in map(small_sample_warning, sorted(set(here["n"]))) if w]
        lines += ["| Checkpoint | Attack | n | Seed | " + " | ".join(f"ε = {c}" for c in columns) + " |",
                  "|---|---|---:|---:|" + "---:|" * len(columns)]
        lines += [f"| {row} | " + " | ".join(cells) + " |" for row, cells in zip(table.index, table.to_numpy())]
        lines.append("")
    ns = sorted(set(frame["n"]))
    lines += ["- Each cell: accuracy (%) on the row's n images, with its 95 % Wilson score interval on n_correct/n "
              "in brackets, value [low, high]. ε = 0 is clean accuracy.",
              "- The figures draw each attack configuration measured at two ε or more, a panel per configuration; "
              "single-ε rows (e.g. an audit's attacks at its checking radius) are in this table only.",
              "- " + " ".join(noise_note(n) for n in ns),
              "- Attack: attack/backend/attack loss/steps x restarts/sweep (`/survivors`: it attacked only the images "
              "the rows before it left standing); a worst-case row counts an image as robust only if it withstood "
              "every attack at that ε.",
              "- Rows are bound to the model they measured (checkpoint path and model_sha256): a path with several "
              "models has one row per model, labelled by the first 8 hex digits of its hash; with no run.json, "
              "nothing here says which of them is current."]
    lines += [f"- {note}" for note in identity_notes(results)]
    return "\n".join(lines) + "\n"


def render_checkpoint_table(results: Results) -> dict[Path, bytes]:
    """``robustness.csv`` and ``robustness.md`` of a bare attacks CSV, as file bytes."""
    frame = checkpoint_frame(results)
    texts = {"robustness.csv": csv_text(_csv_frame(frame), CHECKPOINT_COLUMNS),
             "robustness.md": checkpoint_markdown(results, frame)}
    return {results.root / name: text.encode("utf-8") for name, text in texts.items()}
