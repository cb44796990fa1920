"""Reproduce results/foundation: ce vs gccs with small-cnn on digits and Fashion-MNIST (CPU, reduced scale).

    python results/foundation/reproduce.py [--device auto] [--runs runs/foundation]

Trains (or reuses, resumably) four runs with `robench.train`, then writes here: each run's
run.json and train_log.csv, manifest.json (settings, versions, git commit, device, seeds,
checkpoint hashes, timings) and README.md (the accuracy table). Until recipes and
`robench run` exist, this script is the recipe of these results.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from robench.checkpoints import METADATA, read_metadata
from robench.devices import resolve_device
from robench.results import atomic_write_json, atomic_write_text, environment, utc_now
from robench.train import TrainConfig, train

HERE = Path(__file__).resolve().parent
RUNS = [  # (dataset, epochs, target accuracy from the issue)
    ("digits", 30, 0.95),
    ("fashion-mnist", 5, 0.88),
]
LOSSES = ("ce", "gccs")
SEED = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", default="runs/foundation")
    args = parser.parse_args()
    device = resolve_device(args.device)
    started = utc_now()
    rows, entries = [], []
    for dataset, epochs, target in RUNS:
        for loss in LOSSES:
            name = f"{dataset}-small-cnn-{loss}"
            config = TrainConfig(dataset=dataset, model="small-cnn", loss=loss, out=f"{args.runs}/{name}",
                                 epochs=epochs, seed=SEED)
            t0 = time.perf_counter()
            done = (Path(config.out) / METADATA).exists() and read_metadata(config.out).get("status") == "finished"
            meta = read_metadata(config.out) if done else train(config, device=str(device), resume=True)
            dest = HERE / name
            dest.mkdir(exist_ok=True)
            for file in (METADATA, "train_log.csv"):
                shutil.copyfile(Path(config.out) / file, dest / file)
            rows.append((dataset, loss, epochs, meta, target))
            entries.append({"run": name, "config": meta["config"], "weights_sha256": meta["weights_sha256"],
                            "test_accuracy": meta["test_accuracy"], "best_test_accuracy": meta["best_test_accuracy"],
                            "train_wall_time_s": meta["wall_time_s"], "reused": done,
                            "seconds_this_invocation": time.perf_counter() - t0})
    manifest = {"name": "foundation", "scale": "reduced: small-cnn, few epochs, CPU",
                "script": "results/foundation/reproduce.py", "seed": SEED, "started_at": started,
                "finished_at": utc_now(), "environment": environment(device), "runs": entries}
    atomic_write_json(HERE / "manifest.json", manifest)
    atomic_write_text(HERE / "README.md", render(rows, manifest))


def render(rows, manifest) -> str:
    env = manifest["environment"]
    lines = [
        "# Foundation: cross-entropy vs GCCS, small-cnn (reduced scale, CPU)",
        "",
        "Reduced-scale runs, not the paper's setting: `small-cnn` instead of ResNet-18, a few epochs",
        "instead of 1800, on CPU. Paper defaults otherwise (SGD momentum 0.9, lr 0.01 cosine, weight decay",
        "0.001, batch 128, dropout keep 0.8); `gccs` with its default gradient clipping at 5.",
        f"Produced by `python results/foundation/reproduce.py` at commit `{env['git_commit']}` on",
        f"{env['device']} ({env['torch_threads']} threads), torch {env['versions']['torch']}, "
        f"seed {manifest['seed']}. Provenance: `manifest.json`; per-run details: `*/run.json`.",
        "",
        "| dataset | loss | epochs | final test acc | best test acc | target | train time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, loss, epochs, meta, target in rows:
        lines.append(f"| {dataset} | {loss} | {epochs} | {meta['test_accuracy']:.4f} | "
                     f"{meta['best_test_accuracy']:.4f} | ≥ {target:.2f} | {meta['wall_time_s']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
