"""Reproduce a results/<experiment>/ directory from the committed code (reduced scale, CPU).

    python results/reproduce.py foundation|defenses [--device auto] [--runs runs/results]

Trains every run of the experiment with `robench.training.loop.train` (fine-tuning after its parent;
finished runs are reused, unfinished ones resumed), then writes into results/<experiment>/
each run's run.json and train_log.csv, manifest.json (settings, versions, git commit,
device, seeds, checkpoint hashes, timings) and README.md (the table). Until recipes and
`robench run` exist, this script is the recipe of these results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from robench.devices import resolve_device
from robench.evaluation.sweep import SweepSpec, run_sweep
from robench.files import atomic_write_json, atomic_write_text
from robench.models.checkpoints import read_metadata
from robench.models.run_layout import METADATA
from robench.provenance import environment, utc_now
from robench.training.config import TrainConfig
from robench.training.loop import train

HERE = Path(__file__).resolve().parent
SEED = 0
PENALISED = ("jacobian", "input-grad", "cross-lipschitz")


@dataclass(frozen=True)
class Run:
    name: str
    dataset: str
    loss: str
    epochs: int
    parent: str | None = None  # name of the run to fine-tune
    extra: dict = field(default_factory=dict)  # further TrainConfig fields


def _defenses(dataset: str, epochs: int, finetune_epochs: int) -> list[Run]:
    runs = [Run(f"{dataset}-{loss}", dataset, loss, epochs) for loss in ("ce", "gccs", *PENALISED)]
    runs += [Run(f"{dataset}-{loss}-finetune", dataset, loss, finetune_epochs, parent=f"{dataset}-ce")
             for loss in ("ce", "gccs", *PENALISED)]  # ce -> ce: the control for the fine-tuned defenses
    return runs


FOUNDATION = [Run(f"{d}-small-cnn-{loss}", d, loss, e) for d, e in (("digits", 30), ("fashion-mnist", 5))
              for loss in ("ce", "gccs")]
EXPERIMENTS = {
    "foundation": FOUNDATION,
    "attacks-fashion-mnist": [r for r in FOUNDATION if r.dataset == "fashion-mnist"],
    "defenses": _defenses("digits", 30, 10) + _defenses("fashion-mnist", 1, 1),
}
RUNS_FROM = {"attacks-fashion-mnist": "foundation"}  # experiments that attack another experiment's runs
EPS_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
SWEEPS = {  # experiment -> sweeps over all its runs (SweepSpec fields)
    "attacks-fashion-mnist": [
        dict(attacks=("pgd", "tgsm"), backends=("native", "art"), eps_grid=EPS_GRID, n_samples=1000),
        dict(attacks=("jsma",), backends=("native",), eps_grid=EPS_GRID, n_samples=100),
        # ART's JSMA raises a feature again and again until it reaches 1, so its time grows like 1/θ:
        # at ε = 0.01 one image takes thousands of iterations; it is cross-checked at large ε only
        dict(attacks=("jsma",), backends=("art",), eps_grid=(0.0, 0.1, 0.3), n_samples=100),
        dict(attacks=("pgd",), backends=("native",), eps_grid=EPS_GRID, n_samples=1000, sweep="independent"),
    ],
}
DESCRIPTIONS = {
    "foundation": "Cross-entropy vs GCCS, small-cnn: digits 30 epochs, Fashion-MNIST 5 epochs.",
    "defenses": "All five losses, regular training and fine-tuning of the ce run (ce -> ce fine-tuning is the "
                "control), small-cnn: digits (30 epochs; fine-tuning 10 more), Fashion-MNIST (1 epoch; fine-tuning "
                "1 more). Gradient statistics on 500 fixed test images (all 360 for digits).",
    "attacks-fashion-mnist": "PGD-5, TGSM-5 (1,000 test images) and JSMA-200 (100 test images), native and through "
                             "ART, relative eps, cumulative sweeps (plus an independent PGD sweep, the paper's "
                             "protocol), on the 5-epoch Fashion-MNIST ce and gccs runs of `foundation`.",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", default="runs/results")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite README.md from manifest.json, the run.json copies and attacks.csv")
    args = parser.parse_args()
    if args.render_only:
        return render_only(args.experiment)
    device = resolve_device(args.device)
    out_dir = HERE / args.experiment
    started, env = utc_now(), environment(device)  # the code that runs is the code at start
    rows, entries = [], []
    runs_dir = Path(args.runs) / RUNS_FROM.get(args.experiment, args.experiment)
    for run in EXPERIMENTS[args.experiment]:
        out = runs_dir / run.name
        init = str(runs_dir / run.parent) if run.parent else None
        config = TrainConfig(dataset=run.dataset, model="small-cnn", loss=run.loss, out=str(out), epochs=run.epochs,
                             seed=SEED, init=init, **run.extra)
        t0 = time.perf_counter()
        done = (out / METADATA).exists() and read_metadata(out).get("status") == "finished"
        meta = read_metadata(out) if done else train(config, device=str(device), resume=True)
        (out_dir / run.name).mkdir(parents=True, exist_ok=True)
        for file in (METADATA, "train_log.csv"):
            shutil.copyfile(out / file, out_dir / run.name / file)
        rows.append((run, meta))
        entries.append({"run": run.name, "config": meta["config"], "weights_sha256": meta["weights_sha256"],
                        "parent": meta["parent"], "test_accuracy": meta["test_accuracy"],
                        "best_test_accuracy": meta["best_test_accuracy"],
                        "gradient_statistics": meta.get("gradient_statistics"),
                        "train_wall_time_s": meta["wall_time_s"], "reused": done,
                        "seconds_this_invocation": time.perf_counter() - t0})
    sweeps = []
    for settings in SWEEPS.get(args.experiment, []):
        spec = SweepSpec(checkpoints=tuple(str(runs_dir / run.name) for run, _ in rows),
                         out=str(out_dir / "attacks.csv"), **settings)
        t0 = time.perf_counter()
        written = run_sweep(spec, device=str(device))
        sweeps.append({"spec": dataclasses.asdict(spec), "rows_written": len(written),
                       "seconds": time.perf_counter() - t0})
    manifest = {"name": args.experiment, "scale": "reduced: small-cnn, few epochs, CPU",
                "description": DESCRIPTIONS[args.experiment], "script": f"results/reproduce.py {args.experiment}",
                "seed": SEED, "started_at": started, "finished_at": utc_now(), "environment": env,
                "runs": entries, "sweeps": sweeps}
    atomic_write_json(out_dir / "manifest.json", manifest)
    atomic_write_text(out_dir / "README.md", render(args.experiment, rows, manifest))


def render_only(experiment: str) -> None:
    out_dir = HERE / experiment
    manifest = json.loads((out_dir / "manifest.json").read_text())
    rows = [(run, json.loads((out_dir / run.name / METADATA).read_text())) for run in EXPERIMENTS[experiment]]
    atomic_write_text(out_dir / "README.md", render(experiment, rows, manifest))


def render(experiment: str, rows: list, manifest: dict) -> str:
    env = manifest["environment"]
    lines = [
        f"# {experiment}: reduced-scale runs (small-cnn, CPU)",
        "",
        DESCRIPTIONS[experiment],
        "",
        "Reduced scale, not the paper's setting: `small-cnn` instead of ResNet-18, a few epochs instead of 1800,",
        "on CPU. Paper defaults otherwise (SGD momentum 0.9, lr 0.01 cosine, weight decay 0.001, batch 128, dropout",
        "keep 0.8); each loss with its default hyper-parameters (`robench list losses`, README).",
        f"Written by `python {manifest['script']}` at commit `{env['git_commit']}` on {env['device']} "
        f"({env['torch_threads']} threads), torch {env['versions']['torch']}, seed {manifest['seed']}; the runs were "
        f"trained at commit(s) {', '.join(sorted({'`' + m['environment']['git_commit'] + '`' for _, m in rows}))} "
        "(a reused run keeps the commit it was trained at).",
        "Provenance: `manifest.json`; per-run details: `*/run.json`.",
        "",
        "| run | dataset | loss | training | epochs | test acc | best | mean ‖J‖_F | mean ‖∇ₓCE‖₂ | "
        "mean Cross-Lipschitz | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    def stat(stats: dict, key: str) -> str:
        return f"{stats[key]:.4g}" if key in stats else "–"

    for run, meta in rows:
        stats = meta.get("gradient_statistics") or {}
        lines.append(
            f"| {run.name} | {run.dataset} | {run.loss} | {meta['training']} | {run.epochs} | "
            f"{meta['test_accuracy']:.4f} | {meta['best_test_accuracy']:.4f} | "
            f"{stat(stats, 'jacobian_frobenius')} | {stat(stats, 'ce_input_gradient')} | "
            f"{stat(stats, 'cross_lipschitz')} | {meta['wall_time_s']:.0f} |")
    if (HERE / experiment / "attacks.csv").exists():
        lines += ["", *attack_tables(HERE / experiment / "attacks.csv")]
    return "\n".join(lines) + "\n"


def attack_tables(csv_path: Path) -> list[str]:
    """Accuracy (and target success) vs ε, one table per (attack, sweep), rows = loss x backend."""
    import pandas as pd

    df = pd.read_csv(csv_path)
    lines = ["Accuracy under attack (`attacks.csv`; relative ε, ‖n‖∞ ≤ ε·‖x‖∞; target success in brackets):"]
    for (attack, sweep, n), part in df.groupby(["attack", "sweep", "n"], sort=False):
        eps = sorted(part["eps"].unique())
        lines += ["", f"**{attack}**, {sweep} sweep, {n} images, {part['steps'].iloc[0]} steps", "",
                  "| loss | backend | " + " | ".join(f"ε={e:g}" for e in eps) + " |",
                  "|---|---|" + "---|" * len(eps)]
        for (loss, backend), cells in part.groupby(["loss", "backend"], sort=False):
            by_eps = cells.set_index("eps")
            values = []
            for e in eps:
                if e not in by_eps.index:  # e.g. ART's JSMA, cross-checked at the large radii only
                    values.append("–")
                    continue
                acc = by_eps.loc[e, "accuracy"]
                ts = by_eps.loc[e, "target_success"]
                values.append(f"{acc:.3f}" + (f" ({ts:.2f})" if ts == ts else ""))
            lines.append(f"| {loss} | {backend} | " + " | ".join(values) + " |")
    return lines


if __name__ == "__main__":
    main()
