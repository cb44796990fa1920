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
from robench.files import (atomic_write_json, atomic_write_text, check_directory_target, file_sha256, load_tensors,
                           save_tensors)
from robench.models.checkpoints import load_weights, read_metadata
from robench.models.run_layout import METADATA, TRAIN_STATE, WEIGHTS
from robench.provenance import environment, utc_now
from robench.training.config import TrainConfig, config_diffs

TRAIN_LOG = "train_log.csv"


def check_output_dir(out: Path, resume: bool, force: bool, config: TrainConfig) -> dict | None:
    """Decide what to do with an existing ``out``; returns its metadata when resuming.

    With ``resume``, a run finished with exactly ``config`` is returned as it is (status ``finished``):
    the caller trains nothing. Without it, or with another config, a finished run is an error unless
    ``force``. ``out`` that is a file is refused even with ``force``.
    """
    check_directory_target(out, "--out")
    if not out.exists() or force or not any(out.iterdir()):
        return None
    if not (out / METADATA).is_file():
        raise RobenchError(f"--out {out} is a non-empty directory without a robench run; choose a new --out "
                           f"or pass --force to write into it")
    meta = read_metadata(out)
    status = meta.get("status")
    if status == "finished":
        diffs = config_diffs(meta.get("config") or {}, dataclasses.asdict(config))
        if resume and not diffs:
            return meta
        other = f" of another command ({'; '.join(diffs)})" if resume else ""
        raise RobenchError(f"{out} holds a finished run ({meta.get('epochs_done')} epochs, test accuracy "
                           f"{accuracy_text(meta)}){other}; choose a new --out or pass --force to retrain")
    if not resume:
        raise RobenchError(f"{out} holds an unfinished run ({meta.get('epochs_done', 0)} of "
                           f"{(meta.get('config') or {}).get('epochs', '?')} epochs); add --resume to continue or "
                           f"--force to start over")
    return meta


def accuracy_text(meta: dict) -> str:
    """A run's final test accuracy to 4 decimals, or ``n/a`` when run.json has none."""
    acc = meta.get("test_accuracy")
    return f"{acc:.4f}" if isinstance(acc, (int, float)) else "n/a"


def thread_warning(previous: dict, device: torch.device) -> str | None:
    """Why resuming ``previous`` on ``device`` with today's torch thread count breaks bit-identity, or None.

    On CPU, reductions split work by thread, so another thread count changes float rounding.
    """
    started = (previous.get("environment") or {}).get("torch_threads")
    now = torch.get_num_threads()
    if device.type != "cpu" or not isinstance(started, int) or started == now:
        return None
    return (f"resuming with {now} torch threads; its last session ran with {started} — on CPU the weights will "
            f"not be bit-identical to an uninterrupted run")


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
    diffs = config_diffs(previous.get("config") or {}, meta["config"])
    if diffs:
        raise RobenchError(f"--resume {out}: the command differs from the run's: " + "; ".join(diffs))
    kept = ("history", "epochs_done", "test_accuracy", "best_test_accuracy", "wall_time_s", "started_at", "training",
            "parent")
    missing = [k for k in kept if k not in previous]
    if missing or not isinstance(previous["epochs_done"], int):
        raise RobenchError(f"{out}/run.json lacks {', '.join(missing) or 'an integer epochs_done'}: it cannot be "
                           f"resumed; pass --force to start over")
    done = previous["epochs_done"]
    if done == 0:
        return 0
    state = load_tensors(out / TRAIN_STATE)
    if int(state.pop("epoch").item()) != done:
        raise RobenchError(f"{out}: {TRAIN_STATE} does not belong to epoch {done}; pass --force to start over")
    load_weights(model, out / WEIGHTS)
    for name, param in model.named_parameters():
        if f"momentum.{name}" in state:
            optimizer.state[param]["momentum_buffer"] = state[f"momentum.{name}"].to(param.device)
    for key in kept:
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
