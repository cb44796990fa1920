"""``robench quickstart``: small-cnn with ``ce`` and ``gccs`` on the bundled ``digits`` data.

Needs no download (scikit-learn's 8x8 digits) and runs in about a minute on 2 CPU cores.
Finished runs in the output directory are reused, so re-running only prints the table.
"""

from __future__ import annotations

from pathlib import Path

from robench.data import load_dataset
from robench.training.config import TrainConfig, finished_metadata
from robench.training.loop import train

LOSSES_COMPARED = ("ce", "gccs")


def run_quickstart(out: Path, *, epochs: int = 30, seed: int = 0, force: bool = False, device: str = "auto",
                   progress: bool = True) -> str:
    """Train (or reuse) both runs under ``out`` and return a side-by-side text table."""
    data = load_dataset("digits", seed=seed)
    rows = []
    for loss in LOSSES_COMPARED:
        config = TrainConfig(dataset="digits", model="small-cnn", loss=loss, out=str(out / loss), epochs=epochs,
                             seed=seed)
        meta = finished_metadata(config) if not force else None
        reused = meta is not None
        if meta is None:
            meta = train(config, device=device, resume=True, force=force, progress=progress, data=data)
        rows.append((loss, meta, reused))
    lines = [f"digits (1,437 train / 360 test), small-cnn, {epochs} epochs, seed {seed}",
             f"{'loss':<6} {'test acc':>9} {'best':>7} {'train s':>8}  run"]
    for loss, meta, reused in rows:
        note = " (reused)" if reused else ""
        lines.append(f"{loss:<6} {meta['test_accuracy']:>9.4f} {meta['best_test_accuracy']:>7.4f} "
                     f"{meta['wall_time_s']:>8.1f}  {out / loss}{note}")
    return "\n".join(lines)
