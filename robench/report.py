"""Reports: a results directory -> the paper's Table I (CSV, Markdown, LaTeX) and Figs. 2-6.

Follows Ali, Migliorati, Bianchi and Magli, "Beyond cross-entropy: learning highly separable
feature distributions for robust and accurate classification": Table I is the maximum test
accuracy over epochs per method (loss x training mode) and dataset x architecture. Reads only
what runs and sweeps wrote (``run.json``, ``attacks.csv``, ``latent/*.safetensors``) and never
touches a model. Every file is written atomically; re-running gives byte-identical tables.
The figures live in :mod:`robench.figures`; the audit's robustness table, check matrix and Fig. 7
(written where runs have an ``audit.json``) in :mod:`robench.audit_report`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from robench.errors import RobenchError
from robench.results import atomic_write_bytes, read_attack_rows

METHODS = {
    ("gccs", "regular"): "GCCS - regular training",
    ("gccs", "finetune"): "GCCS - fine-tuning",
    ("ce", "regular"): "cross-entropy (no defense)",
    ("ce", "finetune"): "cross-entropy - fine-tuning",
    ("jacobian", "regular"): "Jacobian reg. - regular training",
    ("jacobian", "finetune"): "Jacobian reg. - fine-tuning",
    ("input-grad", "regular"): "Input gradient reg. - regular training",
    ("input-grad", "finetune"): "Input gradient reg. - fine-tuning",
    ("cross-lipschitz", "regular"): "Cross-Lipschitz - regular training",
    ("cross-lipschitz", "finetune"): "Cross-Lipschitz - fine-tuning",
}
"""(loss, training) -> row label, in the paper's Table I order (ce fine-tuning is ours, not the paper's)."""

DATASET_ORDER = ("mnist", "fashion-mnist", "svhn", "cifar10", "cifar100")
MODEL_ORDER = ("small-cnn", "resnet18", "shake-shake-26-2x96d", "shake-shake-26-2x112d")
PAPER_SOURCE = "Table I of Ali et al., 'Beyond cross-entropy: learning highly separable feature distributions'"


def method_label(loss: str, training: str, variant: str = "") -> str:
    label = METHODS.get((loss, training), f"{loss} - {training}")
    return f"{label} ({variant})" if variant else label


def method_order(loss: str, training: str, variant: str = "") -> tuple:
    keys = list(METHODS)
    return (keys.index((loss, training)) if (loss, training) in keys else len(keys), loss, training, variant)


def column_order(dataset: str, model: str) -> tuple:
    def rank(name, order):
        return (order.index(name), "") if name in order else (len(order), name)
    return rank(dataset, DATASET_ORDER) + rank(model, MODEL_ORDER)


@dataclass(frozen=True)
class Run:
    """One finished training run, as its ``run.json`` describes it."""

    name: str
    dataset: str
    model: str
    loss: str
    training: str
    seed: int
    hyper: dict = field(hash=False, compare=False)
    best: float  # best_test_accuracy, a fraction in [0, 1]
    variant: str = ""  # the loss hyperparameters telling this run apart from others of its method
    class_names: tuple = ()


@dataclass
class Results:
    """Everything a report reads from one results directory."""

    root: Path
    name: str
    scale: str | None
    runs: list[Run]
    skipped: list[str]  # "run-name (status)" of unfinished runs
    attacks: list[dict]  # rows of attacks.csv ([] if absent); eps, accuracy floats, seed int
    latent: list[Path]
    audits: list = field(default_factory=list)  # robench.audit_report.Audit per runs/<run>/audit.json


def variant_labels(hypers: list[dict], ignore: tuple = ()) -> list[str]:
    """For each hyperparameter dict, ``"k=v, ..."`` over the keys whose values differ among ``hypers``."""
    keys = sorted({k for h in hypers for k in h} - set(ignore))
    differing = [k for k in keys if len({json.dumps(h.get(k), sort_keys=True) for h in hypers}) > 1]

    def text(value) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)
    return [", ".join(f"{k}={text(h.get(k, '-'))}" for k in differing) for h in hypers]


def _read_json_object(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RobenchError(f"cannot read {path}: {exc}") from None
    if not isinstance(obj, dict):
        raise RobenchError(f"{path} is not robench's (not a JSON object)")
    return obj


def load_runs(root: Path) -> tuple[list[Run], list[str]]:
    """Finished runs under ``root`` (``runs/*/run.json`` or ``*/run.json``) and notes on skipped ones."""
    files = {p.resolve(): p for pattern in ("runs/*/run.json", "*/run.json") for p in root.glob(pattern)}
    raw, skipped = [], []
    for path in sorted(files.values(), key=lambda p: (p.parent.name, str(p))):
        meta = _read_json_object(path)
        if meta.get("status") != "finished":
            skipped.append(f"{path.parent.name} ({meta.get('status', 'no status')})")
            continue
        missing = [k for k in ("dataset", "model", "loss", "seed", "best_test_accuracy") if k not in meta]
        if missing:
            raise RobenchError(f"{path} lacks {', '.join(repr(k) for k in missing)}; is it a robench run.json?")
        raw.append((path.parent.name, meta))
    groups = defaultdict(list)
    for i, (_, meta) in enumerate(raw):
        groups[(meta["loss"], meta.get("training", "regular"), meta["dataset"], meta["model"])].append(i)
    variants = [""] * len(raw)
    for members in groups.values():
        for i, label in zip(members, variant_labels([raw[i][1].get("loss_hyper") or {} for i in members])):
            variants[i] = label
    runs = [Run(name=name, dataset=meta["dataset"], model=meta["model"], loss=meta["loss"],
                training=meta.get("training", "regular"), seed=int(meta["seed"]), hyper=meta.get("loss_hyper") or {},
                best=float(meta["best_test_accuracy"]), variant=variant,
                class_names=tuple(meta.get("class_names") or ()))
            for (name, meta), variant in zip(raw, variants)]
    return runs, skipped


def load_attacks(path: Path) -> list[dict]:
    """Rows of ``attacks.csv`` (a :class:`RobenchError` if it is not robench's), numbers parsed."""
    rows = []
    for line, row in enumerate(read_attack_rows(path), start=2):
        try:
            rows.append(dict(row, eps=float(row["eps"]), accuracy=float(row["accuracy"]), seed=int(row["seed"])))
        except (TypeError, ValueError):
            raise RobenchError(f"{path} line {line}: eps, accuracy and seed must be numbers") from None
    return rows


def load_results(results_dir: str | Path) -> Results:
    """Read a results directory; a :class:`RobenchError` if it is missing or holds no run.json."""
    from robench.audit_report import load_audits  # audit_report builds on this module

    root = Path(results_dir)
    if not root.is_dir():
        raise RobenchError(f"results directory {root} does not exist")
    manifest = _read_json_object(root / "manifest.json") if (root / "manifest.json").exists() else {}
    runs, skipped = load_runs(root)
    if not runs and not skipped:
        raise RobenchError(f"no run.json found in {root} (looked in runs/*/ and */)")
    return Results(root=root, name=str(manifest.get("name") or root.resolve().name), scale=manifest.get("scale"),
                   runs=runs, skipped=skipped, attacks=load_attacks(root / "attacks.csv"),
                   latent=sorted((root / "latent").glob("*.safetensors")), audits=load_audits(root))


# --- Table I ------------------------------------------------------------------------------------------


def paper_table1() -> list[dict]:
    """The paper's Table I (accuracy in %), shipped as ``robench/paper_table1.csv``."""
    text = resources.files("robench").joinpath("paper_table1.csv").read_text(encoding="utf-8")
    return [dict(row, accuracy=float(row["accuracy"])) for row in csv.DictReader(io.StringIO(text))]


def paper_model_for(dataset: str, model: str, paper: list[dict]) -> str | None:
    """The paper's architecture to compare (dataset, model) with: the same one, else the dataset's first column."""
    models = [r["model"] for r in paper if r["dataset"] == dataset]
    if model in models:
        return model
    models.sort(key=lambda m: column_order(dataset, m))
    return models[0] if models else None


def table1_rows(runs: list[Run], compare_paper: bool = False) -> list[dict]:
    """One row per (method, dataset, model): best test accuracy in %, mean/min/max over seeds."""
    groups = defaultdict(list)
    for run in runs:
        groups[(run.loss, run.training, run.variant, run.dataset, run.model)].append(run)
    paper = paper_table1() if compare_paper else []
    by_key = {(r["method_loss"], r["training"], r["dataset"], r["model"]): r["accuracy"] for r in paper}
    rows = []
    for key in sorted(groups, key=lambda k: method_order(*k[:3]) + column_order(*k[3:])):
        loss, training, variant, dataset, model = key
        accs = sorted(100.0 * r.best for r in groups[key])
        row = {"method": method_label(loss, training, variant), "loss": loss, "training": training,
               "loss_hyper": variant, "dataset": dataset, "model": model, "n_seeds": len(accs),
               "seeds": " ".join(str(s) for s in sorted(r.seed for r in groups[key])),
               "accuracy_mean": math.fsum(accs) / len(accs), "accuracy_min": accs[0], "accuracy_max": accs[-1]}
        if compare_paper:
            paper_model = paper_model_for(dataset, model, paper)
            row["paper_model"] = paper_model or ""
            row["paper_accuracy"] = by_key.get((loss, training, dataset, paper_model))
        rows.append(row)
    return rows


def _csv(rows: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else f"{row[c]:.4f}" if isinstance(row[c], float) else row[c]
                         for c in columns])
    return buffer.getvalue()


def _grid(rows: list[dict], compare_paper: bool) -> tuple[list[str], list[tuple], list[list[str]]]:
    """Row labels, (dataset, model) columns and cell texts ("–" where a combination is missing)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    columns = sorted({(r["dataset"], r["model"]) for r in rows}, key=lambda c: column_order(*c))
    cells = {(r["method"], r["dataset"], r["model"]): r for r in rows}
    grid = []
    for method in methods:
        line = []
        for dataset, model in columns:
            row = cells.get((method, dataset, model))
            if row is None:
                line.append("–")
                continue
            notes = [f"n={row['n_seeds']}"] if row["n_seeds"] > 1 else []
            if compare_paper and row["paper_accuracy"] is not None:
                notes.append(f"paper {row['paper_accuracy']:.2f}")
            line.append(f"{row['accuracy_mean']:.2f}" + (f" ({', '.join(notes)})" if notes else ""))
        grid.append(line)
    return methods, columns, grid


def _notes(results: Results, rows: list[dict], compare_paper: bool) -> list[str]:
    notes = ["Each cell: maximum test accuracy over epochs (%) of one run, or the mean over n seeds "
             "(min and max in table1.csv)."]
    if any(r["loss_hyper"] for r in rows):
        notes.append("A method shown with (key=value) has runs with different loss hyperparameters; "
                     "each setting is its own row.")
    if compare_paper:
        notes.append(f"Paper numbers: {PAPER_SOURCE}, same dataset and method.")
        differ = sorted({(r["dataset"], r["model"], r["paper_model"]) for r in rows
                         if r["paper_model"] and r["paper_model"] != r["model"]}, key=lambda c: column_order(*c[:2]))
        if differ:
            notes.append("Architectures differ from the paper's: " + "; ".join(
                f"{d} {m} (paper: {p})" for d, m, p in differ) + ".")
        absent = sorted({r["dataset"] for r in rows if not r["paper_model"]})
        if absent:
            notes.append(f"Not in the paper: {', '.join(absent)}.")
    if results.skipped:
        notes.append(f"Skipped {len(results.skipped)} unfinished run(s): {', '.join(results.skipped)}.")
    return notes


def table1_markdown(results: Results, rows: list[dict], compare_paper: bool = False) -> str:
    methods, columns, grid = _grid(rows, compare_paper)
    lines = [f"# Table I: maximum test accuracy (%) — {results.name}", ""]
    if results.scale:
        lines += [f"**{results.scale}**", ""]
    lines.append("| Method | " + " | ".join(f"{d} {m}" for d, m in columns) + " |")
    lines.append("|---|" + "---:|" * len(columns))
    lines += [f"| {method} | " + " | ".join(line) + " |" for method, line in zip(methods, grid)]
    lines += [""] + [f"- {note}" for note in _notes(results, rows, compare_paper)]
    if results.audits:
        from robench.audit_report import table1_section

        lines += [""] + table1_section(results)
    return "\n".join(lines) + "\n"


_TEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\~{}",
        "^": r"\^{}", "\\": r"\textbackslash{}", "–": "--", "—": "---", "×": r"$\times$", "ε": r"$\varepsilon$",
        "μ": r"$\mu$", "≤": r"$\leq$", "∞": r"$\infty$", "‖": r"$\|$"}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def table1_tex(results: Results, rows: list[dict], compare_paper: bool = False) -> str:
    methods, columns, grid = _grid(rows, compare_paper)
    caption = f"Maximum test accuracy (\\%) of {tex_escape(results.name)}."
    if results.scale:
        caption += f" \\textbf{{{tex_escape(results.scale)}.}}"
    caption += " " + " ".join(tex_escape(n) for n in _notes(results, rows, compare_paper))
    lines = [r"% Table I written by robench report; needs \usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
             f"\\caption{{{caption}}}", f"\\label{{tab:table1-{re.sub(r'[^A-Za-z0-9-]+', '-', results.name)}}}",
             r"\begin{tabular}{l" + "r" * len(columns) + "}", r"\toprule",
             "Method & " + " & ".join(tex_escape(d) for d, _ in columns) + r" \\",
             " & " + " & ".join(tex_escape(m) for _, m in columns) + r" \\", r"\midrule"]
    lines += [tex_escape(method) + " & " + " & ".join(tex_escape(c) for c in line) + r" \\"
              for method, line in zip(methods, grid)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


TABLE1_COLUMNS = ["method", "loss", "training", "loss_hyper", "dataset", "model", "n_seeds", "seeds",
                  "accuracy_mean", "accuracy_min", "accuracy_max"]


def render_table1(results: Results, compare_paper: bool = False) -> dict[Path, bytes]:
    """``table1.csv``, ``table1.md`` and ``table1.tex`` of the results directory, as file bytes."""
    rows = table1_rows(results.runs, compare_paper)
    columns = TABLE1_COLUMNS + (["paper_model", "paper_accuracy"] if compare_paper else [])
    texts = {"table1.csv": _csv(rows, columns), "table1.md": table1_markdown(results, rows, compare_paper),
             "table1.tex": table1_tex(results, rows, compare_paper)}
    return {results.root / name: text.encode("utf-8") for name, text in texts.items()}


def write_report(results_dir: str | Path, compare_paper: bool = False) -> list[Path]:
    """Read results_dir and (re)write Table I and Figs. 2-6 (those its data allows), and where runs were
    audited the robustness table, the audit matrix and Fig. 7 (:mod:`robench.audit_report`); return the paths.

    Everything is rendered before anything is written, so bad input changes no file.
    """
    from robench.audit_report import render_audit  # these build on this module's loaders
    from robench.figures import render_figures

    results = load_results(results_dir)
    files = render_table1(results, compare_paper) | render_figures(results) | render_audit(results)
    for path, data in files.items():
        atomic_write_bytes(path, data)
    return list(files)
