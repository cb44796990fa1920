"""A training run's directory: what is written after every epoch, and how a run resumes.

``model.safetensors`` (weights), ``run.json`` (config, history, provenance; the commit point,
written last), ``train_log.csv`` (one row per epoch) and, while unfinished,
``train_state.safetensors`` (momentum buffers and the epoch). Every file is rewritten atomically,
so a killed run resumes from its last completed epoch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from robench.data import DataSplits
from robench.errors import RobenchError
from robench.files import atomic_write_json, atomic_write_text, file_sha256, load_tensors, save_tensors
from robench.models.checkpoints import METADATA, TRAIN_STATE, WEIGHTS, load_weights, read_metadata
from robench.provenance import environment, utc_now
from robench.training.config import TrainConfig

TRAIN_LOG = "train_log.csv"


def check_output_dir(out: Path, resume: bool, force: bool) -> dict | None:
    """Decide what to do with an existing ``out``; returns its metadata when resuming."""
    if not out.exists() or force or (out.is_dir() and not any(out.iterdir())):
        return None
    if not out.is_dir():
        raise RobenchError(f"--out {out} exists and is not a directory")
    if not (out / METADATA).exists():
        raise RobenchError(f"--out {out} is a non-empty directory without a robench run; choose a new --out "
                           f"or pass --force to write into it")
    meta = read_metadata(out)
    status = meta.get("status")
    if status == "finished":
        raise RobenchError(f"{out} holds a finished run ({meta.get('epochs_done')} epochs, test accuracy "
                           f"{meta.get('test_accuracy', float('nan')):.4f}); choose a new --out or pass --force to retrain")
    if not resume:
        raise RobenchError(f"{out} holds an unfinished run ({meta.get('epochs_done', 0)} of "
                           f"{meta['config']['epochs']} epochs); add --resume to continue or --force to start over")
    return meta


def initial_metadata(config: TrainConfig, data: DataSplits, dev: torch.device, world_size: int = 1) -> dict:
    info = data.info
    return {
        "format": "robench-run-1",
        "status": "running",
        "dataset": config.dataset,
        "dataset_options": config.dataset_options,
        "num_classes": info.num_classes,
        "input_shape": [info.channels, *info.image_size],
        "mean": list(info.mean),
        "std": list(info.std),
        "class_names": list(info.class_names),
        "n_train": len(data.y_train),
        "n_test": len(data.y_test),
        "model": config.model,
        "model_options": config.model_options,
        "loss": config.loss,
        "loss_hyper": dict(config.loss_hyper),
        "training": "regular",
        "parent": None,
        "optimizer": {"name": "sgd", "lr": config.lr, "momentum": config.momentum,
                      "weight_decay": config.weight_decay, "schedule": "cosine",
                      "grad_clip": config.resolved_grad_clip(), "batch_size": config.batch_size,
                      "samples_per_class": config.samples_per_class},
        "seed": config.seed,
        "epochs": config.epochs,
        "epochs_done": 0,
        "test_accuracy": None,
        "best_test_accuracy": None,
        "history": [],
        "config": dataclasses.asdict(config),
        "environment": environment(dev),
        "world_size": world_size,  # processes (torchrun); batch_size above is the global batch
        "started_at": utc_now(),
        "finished_at": None,
        "wall_time_s": 0.0,
    }


def restore(previous: dict, meta: dict, model, optimizer, out: Path) -> int:
    """Load weights, momentum and history of an unfinished run; its config must equal ours."""
    old, new = previous["config"], meta["config"]
    diffs = [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in new if old.get(k) != new[k]]
    if diffs:
        raise RobenchError(f"--resume {out}: the command differs from the run's: " + "; ".join(diffs))
    done = int(previous["epochs_done"])
    if done == 0:
        return 0
    state = load_tensors(out / TRAIN_STATE)
    if int(state.pop("epoch").item()) != done:
        raise RobenchError(f"{out}: {TRAIN_STATE} does not belong to epoch {done}; pass --force to start over")
    load_weights(model, out / WEIGHTS)
    for name, param in model.named_parameters():
        if f"momentum.{name}" in state:
            optimizer.state[param]["momentum_buffer"] = state[f"momentum.{name}"].to(param.device)
    for key in ("history", "epochs_done", "test_accuracy", "best_test_accuracy", "wall_time_s", "started_at",
                "training", "parent"):
        meta[key] = previous[key]
    meta["resumed_at_epoch"] = previous.get("resumed_at_epoch", []) + [done]
    return done


def write_epoch(out: Path, meta: dict, model, optimizer, finished: bool) -> None:
    """Persist one completed epoch: weights and state first, then run.json (the commit point)."""
    save_tensors(out / WEIGHTS, model.state_dict())
    if finished:
        meta["status"] = "finished"
        meta["finished_at"] = utc_now()
        meta["weights_sha256"] = file_sha256(out / WEIGHTS)
    else:
        state = {f"momentum.{name}": optimizer.state[p]["momentum_buffer"]
                 for name, p in model.named_parameters() if "momentum_buffer" in optimizer.state.get(p, {})}
        state["epoch"] = torch.tensor(meta["epochs_done"])
        save_tensors(out / TRAIN_STATE, state)
    atomic_write_json(out / METADATA, meta)
    columns = ["epoch", "loss", "train_accuracy", "test_accuracy", "seconds", "lr"]
    lines = [",".join(columns)] + [",".join(repr(r[c]) for c in columns) for r in meta["history"]]
    atomic_write_text(out / TRAIN_LOG, "\n".join(lines) + "\n")
    if finished:
        (out / TRAIN_STATE).unlink(missing_ok=True)
