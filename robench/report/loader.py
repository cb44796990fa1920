"""What a report reads: a results directory's runs, attack rows, latent snapshots and audits.

``robench report`` reads only what runs, sweeps and audits wrote (``run.json``, ``attacks.csv``,
``latent/*.safetensors``, ``audit.json``) and never touches a model. :func:`load_results` gathers
them into :class:`Results`, leaving out (and counting) every result that measured other weights
than its run's current ``weights_sha256`` (stale) or that belongs to no run of the directory; the
method names and orders here are shared by every table and figure (the paper's Table I order).

A directory (or a CSV path) holding only an attacks CSV written by ``robench attack`` (no run.json)
is read too (:attr:`Results.csv_only`): with no runs there is nothing to call a row stale against,
so every row is kept, bound to its (checkpoint, model_sha256) identity.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from robench.errors import RobenchError
from robench.evaluation.latent import snapshot_model_sha256
from robench.evaluation.store import ResultStore
from robench.models.checkpoints import model_identity
from robench.results import ATTACK_COLUMNS, LEGACY_HEADERS, read_attack_rows

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
    ("pgd-at", "regular"): "PGD adversarial training - regular training",
    ("pgd-at", "finetune"): "PGD adversarial training - fine-tuning",
    ("trades", "regular"): "TRADES - regular training",
    ("trades", "finetune"): "TRADES - fine-tuning",
}
"""(loss, training) -> row label, in the paper's Table I order, then the adversarial-training controls
(ce fine-tuning and the controls are ours, not the paper's)."""

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")
DATASET_ORDER = ("mnist", "fashion-mnist", "svhn", "cifar10", "cifar100")
MODEL_ORDER = ("small-cnn", "resnet18", "shake-shake-26-2x96d", "shake-shake-26-2x112d")


def method_label(loss: str, training: str, variant: str = "") -> str:
    label = METHODS.get((loss, training), f"{loss} - {training}")
    return f"{label} ({variant})" if variant else label


def method_order(loss: str, training: str, variant: str = "") -> tuple:
    """Sort key: Table I's method order, then the variant with its numbers compared as numbers
    (``mu=2`` before ``mu=10``)."""
    keys = list(METHODS)
    natural = tuple((0, float(part), "") if NUMBER.fullmatch(part) else (1, 0.0, part)
                    for part in re.split(r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)", variant) if part)
    return (keys.index((loss, training)) if (loss, training) in keys else len(keys), loss, training, natural)


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
    weights_sha256: str = ""  # the identity of its weights: results of other weights are stale
    n_test: int | None = None  # the test images best_test_accuracy was measured on (None: run.json lacks it)
    input_shape: tuple = ()  # (channels, height, width) of its images, () where run.json lacks it


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
    audits: list = field(default_factory=list)  # Audit per runs/<run>/audit.json
    left_out: dict = field(default_factory=dict)  # why -> how many rows or files were not shown
    unverified: dict = field(default_factory=dict)  # kind -> how many shown results name no weights (robench 0.1)
    csv: Path | None = None  # the attacks CSV read (None: none found)
    csv_only: bool = False  # no run metadata: only the attacks CSV was read (no Table I, Figs. 2-3, audits)
    report_settings: dict = field(default_factory=dict)  # the [report] table of the recipe in manifest.json


def variant_labels(hypers: list[dict], ignore: tuple = ()) -> list[str]:
    """For each hyperparameter dict, ``"k=v, ..."`` over the keys whose values differ among ``hypers``."""
    keys = sorted({k for h in hypers for k in h} - set(ignore))
    differing = [k for k in keys if len({json.dumps(h.get(k), sort_keys=True) for h in hypers}) > 1]

    def text(value) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)
    return [", ".join(f"{k}={text(h.get(k, '-'))}" for k in differing) for h in hypers]


def read_json_object(path: Path) -> dict:
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
        meta = read_json_object(path)
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
                training=meta.get("training", "regular"), seed=int(meta["seed"] or 0), hyper=meta.get("loss_hyper") or {},
                best=float(meta["best_test_accuracy"]), variant=variant,
                class_names=tuple(meta.get("class_names") or ()), weights_sha256=model_identity(meta) or "",
                n_test=_count(meta.get("n_test")), input_shape=tuple(meta.get("input_shape") or ()))
            for (name, meta), variant in zip(raw, variants)]
    return runs, skipped


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def find_attacks_csv(root: Path) -> Path | None:
    """The attacks CSV of a directory: ``attacks.csv``, else its one CSV with an attacks header (what
    ``robench attack --out`` wrote under another name); None if there is none, an error if several."""
    if (root / "attacks.csv").exists():
        return root / "attacks.csv"
    found = []
    for path in sorted(root.glob("*.csv")):
        try:
            with path.open(encoding="utf-8") as fh:
                header = next(csv.reader([fh.readline()]), [])
        except (OSError, UnicodeDecodeError):
            continue
        if header == ATTACK_COLUMNS or header in LEGACY_HEADERS:
            found.append(path)
    if len(found) > 1:
        raise RobenchError(f"{root} holds several attacks CSVs ({', '.join(p.name for p in found)}); "
                           "give one of them: robench report DIR/NAME.csv")
    return found[0] if found else None


def load_attacks(path: Path) -> list[dict]:
    """Rows of ``attacks.csv``, numbers parsed; a :class:`RobenchError` if it is not robench's, is damaged, or
    differs from what robench last wrote from its store (edited by hand)."""
    ResultStore(path).check()
    rows = []
    for line, row in enumerate(read_attack_rows(path), start=2):
        try:
            rows.append(dict(row, eps=float(row["eps"]), accuracy=float(row["accuracy"]), seed=int(row["seed"])))
        except (TypeError, ValueError):
            raise RobenchError(f"{path} line {line}: eps, accuracy and seed must be numbers") from None
    return rows


def load_results(results_dir: str | Path) -> Results:
    """Read a results directory (or the directory of an attacks CSV given as a path); a :class:`RobenchError`
    if it is missing or holds neither a run.json nor an attacks CSV with rows."""
    root = Path(results_dir)
    csv_path = None
    if root.is_file() and root.suffix == ".csv":
        root, csv_path = root.parent, root
    if not root.is_dir():
        raise RobenchError(f"results directory {root} " + ("is not a directory" if root.exists() else "does not exist"))
    manifest = read_json_object(root / "manifest.json") if (root / "manifest.json").exists() else {}
    recipe = manifest.get("recipe") if isinstance(manifest.get("recipe"), dict) else {}
    settings = recipe.get("report") if isinstance(recipe.get("report"), dict) else {}
    runs, skipped = load_runs(root)
    csv_path = csv_path or find_attacks_csv(root)
    if not runs and not skipped:
        attacks = load_attacks(csv_path) if csv_path else []
        if not attacks:
            raise RobenchError(f"no run.json found in {root} (looked in runs/*/ and */), and no attacks CSV with rows")
        unbound = sum(not r["model_sha256"] for r in attacks)
        return Results(root=root, name=str(manifest.get("name") or root.resolve().name), scale=manifest.get("scale"),
                       runs=[], skipped=[], attacks=attacks, latent=[], csv=csv_path, csv_only=True,
                       unverified={"attack rows": unbound} if unbound else {})
    weights = {run.name: run.weights_sha256 for run in runs}
    left_out: dict[str, int] = {}

    def current(name: str, judged: str | None, what: str) -> bool:
        """Whether a result about run ``name`` that measured weights ``judged`` may be shown."""
        if name not in weights:
            left_out[f"{what} of checkpoints that are not runs of this directory"] = \
                left_out.get(f"{what} of checkpoints that are not runs of this directory", 0) + 1
            return False
        if judged and weights[name] and judged != weights[name]:
            left_out[f"stale {what} (their checkpoint has been retrained since)"] = \
                left_out.get(f"stale {what} (their checkpoint has been retrained since)", 0) + 1
            return False
        return True

    attacks = [r for r in (load_attacks(csv_path) if csv_path else [])
               if current(Path(r["checkpoint"]).name, r["model_sha256"], "attack rows")]
    latent = [p for p in sorted((root / "latent").glob("*.safetensors"))
              if current(p.stem, snapshot_model_sha256(p), "latent snapshots")]
    audits = [a for a in load_audits(root) if current(a.run, a.data.get("model_sha256"), "audits")]
    return Results(root=root, name=str(manifest.get("name") or root.resolve().name), scale=manifest.get("scale"),
                   runs=runs, skipped=skipped, attacks=attacks, latent=latent, audits=audits, left_out=left_out,
                   csv=csv_path, report_settings=settings,
                   unverified={kind: count for kind, count in (
                       ("attack rows", sum(not r["model_sha256"] for r in attacks)),
                       ("latent snapshots", sum(snapshot_model_sha256(p) is None for p in latent)),
                       ("audits", sum(not a.data.get("model_sha256") for a in audits))) if count})


AUDIT_KEYS = ("checkpoint", "n", "attack_seed", "eps_mode", "eps_check", "clean_accuracy", "protocol",
              "attacks_at_eps_check", "checks", "verdict")
SEVERITY = ("pass", "warn", "fail")


@dataclass(frozen=True)
class Audit:
    """One ``audit.json``, found at ``<run>/audit.json`` of a results directory."""

    run: str  # the name of the run directory holding it
    data: dict = field(hash=False, compare=False)


def load_audits(root: Path) -> list[Audit]:
    """The ``audit.json`` files under ``root`` (``runs/*/`` or ``*/``), in run-name order."""
    files = {p.resolve(): p for pattern in ("runs/*/audit.json", "*/audit.json") for p in root.glob(pattern)}
    audits = []
    for path in sorted(files.values(), key=lambda p: (p.parent.name, str(p))):
        data = read_json_object(path)
        missing = [k for k in AUDIT_KEYS if k not in data]
        if missing or data["verdict"] not in SEVERITY:
            what = f"lacks {', '.join(repr(k) for k in missing)}" if missing else f"has verdict {data['verdict']!r}"
            raise RobenchError(f"{path} {what}; is it a robench audit.json?")
        audits.append(Audit(run=path.parent.name, data=data))
    return audits


def identity_notes(results: Results) -> list[str]:
    """What the report left out because it measured other weights, and what it could not verify."""
    notes = [f"Not shown: {count} {why}." for why, count in sorted(results.left_out.items())]
    if results.unverified:
        what = ", ".join(f"{count} {kind}" for kind, count in results.unverified.items())
        notes.append(f"Written by robench 0.1, before results recorded the hash of the weights they measured: {what}; "
                     "shown, but not verified against these checkpoints.")
    return notes
