"""Latent-space snapshots for the paper's Fig. 3: z of a few classes, clean and under attack.

For a checkpoint, a seeded stratified subset of the test images of ``classes`` (default
0, 1 and 9, the paper's) goes through the model clean and after the recipe's attack
(default TGSM-5, targeted at (y+1) mod D) at one ε. The z vectors are stored as
safetensors (``z_clean``, ``z_attacked``, ``labels``) with string metadata naming the run,
the SHA-256 of its weights (a snapshot of other weights is stale) and the attack, for
``robench report`` to draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from robench.attacks import build_attack
from robench.data import load_dataset, stratified_subset
from robench.errors import RobenchError
from robench.evaluation.epsilon import absolute_radii
from robench.files import atomic_write_bytes, safetensors_bytes
from robench.models.checkpoints import load_checkpoint


@dataclass(frozen=True)
class LatentSpec:
    """Fig. 3: z of test images of ``classes``, clean and after ``attack`` at ``eps`` (a recipe's ``[latent]``)."""

    attack: str = "tgsm"
    eps: float = 0.05
    eps_mode: str = "relative"
    classes: tuple[int, ...] = (0, 1, 9)
    n_samples: int = 300      # images in total, stratified over ``classes``
    seed: int = 0


def latent_snapshot(model, x: torch.Tensor, y: torch.Tensor, step: LatentSpec, batch_size: int = 128
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """z of clean and attacked images (N, D) each; x on the model's device."""
    attack = build_attack(step.attack, "native")
    torch.manual_seed(step.seed)
    clean, attacked = [], []
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        x_adv = attack(model, xb, yb, absolute_radii(xb, step.eps, step.eps_mode)) if step.eps > 0 else xb
        with torch.no_grad():
            clean.append(model(xb).float().cpu())
            attacked.append(model(x_adv).float().cpu())
    return torch.cat(clean), torch.cat(attacked)


def write_latent(run_dir: str | Path, out: str | Path, step: LatentSpec, *, device="cpu", data_dir=None,
                 download: bool = False) -> Path:
    """Snapshot the run at ``run_dir`` into ``out`` (written atomically)."""
    model, meta = load_checkpoint(run_dir, device=device)
    if max(step.classes) >= meta["num_classes"]:
        raise RobenchError(f"latent classes {list(step.classes)} exceed the {meta['num_classes']} classes of "
                           f"{meta['dataset']}")
    data = load_dataset(meta["dataset"], data_dir=data_dir, download=download,
                        options=meta.get("dataset_options") or {})
    keep = torch.isin(data.y_test, torch.tensor(step.classes))
    x, y = data.x_test[keep], data.y_test[keep]
    idx = stratified_subset(y, min(step.n_samples, len(y)), step.seed)
    x, y = x[idx], y[idx]
    dev = next(model.parameters()).device
    z_clean, z_attacked = latent_snapshot(model, x.to(dev), y.to(dev), step)
    metadata = {"run": Path(run_dir).name, "dataset": meta["dataset"], "model": meta["model"], "loss": meta["loss"],
                "training": meta.get("training") or "regular", "seed": str(meta.get("seed")),
                "model_sha256": meta["model_sha256"], "attack": step.attack, "eps": repr(step.eps),
                "eps_mode": step.eps_mode, "classes": ",".join(str(c) for c in step.classes)}
    tensors = {"z_clean": z_clean.contiguous(), "z_attacked": z_attacked.contiguous(), "labels": y.cpu().long()}
    atomic_write_bytes(out, safetensors_bytes(tensors, metadata))
    return Path(out)


def snapshot_model_sha256(path: str | Path) -> str | None:
    """The ``model_sha256`` a snapshot was taken of (None if absent, unreadable, or older than identities)."""
    try:
        with safe_open(str(path), "pt") as fh:
            return (fh.metadata() or {}).get("model_sha256")
    except (OSError, SafetensorError, ValueError):
        return None
