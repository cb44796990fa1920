"""``train(config) -> run directory``: SGD training with any registered loss.

Defaults follow Ali et al. (Sec. IV-A): SGD with momentum 0.9, initial learning rate 0.01
with cosine decay to 0 over all steps (Gotmare et al. 2018), weight decay 0.001, dropout
keep probability 0.8 (in the model). The epoch count is the user's (the paper used 1800).

A run directory holds ``model.safetensors``, ``run.json`` (config, history, provenance),
``train_log.csv`` (one row per epoch) and, while unfinished, ``train_state.safetensors``
(momentum buffers). All are rewritten atomically after every epoch, so a killed run
resumes from its last completed epoch; every epoch re-seeds the shuffling and the global
RNG (dropout, shake-shake) from (seed, epoch), so on CPU a resumed run ends with the same
weights as an uninterrupted one.

Under ``torchrun --nproc_per_node N`` the same function trains one run on N processes with
DistributedDataParallel; :mod:`robench.distributed` says what is split, what is gathered
and what only rank 0 does.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from robench.allocator import tune_cpu_allocator
from robench.batches import epoch_batches
from robench.checkpoints import (METADATA, TRAIN_STATE, WEIGHTS, build_from_metadata, check_compatible,
                                 load_checkpoint, load_tensors, load_weights, read_metadata, save_tensors)
from robench.data import DATASETS, DataSplits, load_dataset
from robench.distributed import Processes, session
from robench.errors import RobenchError
from robench.evaluate import accuracy
from robench.gradient_stats import gradient_statistics, statistics_subset
from robench.losses import LOSSES, build_loss
from robench.models import MODELS
from robench.progress import EpochProgress
from robench.results import atomic_write_json, atomic_write_text, environment, file_sha256, utc_now


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (recorded in run.json as ``config``)."""

    dataset: str
    model: str
    loss: str
    out: str
    epochs: int
    dataset_options: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    loss_hyper: dict = field(default_factory=dict)
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-3
    grad_clip: float | None = None  # None: the loss's default; 0: no clipping
    samples_per_class: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    seed: int = 0
    init: str | None = None

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number, got {self.lr}"),
            (self.momentum >= 0, f"--momentum must be >= 0, got {self.momentum}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (self.grad_clip is None or self.grad_clip >= 0, f"--grad-clip must be >= 0, got {self.grad_clip}"),
        ]
        for ok, message in checks:
            if not ok:
                raise RobenchError(message)
        DATASETS.get(self.dataset)
        MODELS.get(self.model)
        LOSSES.get(self.loss)

    def resolved_grad_clip(self) -> float | None:
        clip = LOSSES.get(self.loss).grad_clip if self.grad_clip is None else self.grad_clip
        return clip or None


def finished_metadata(config: TrainConfig) -> dict | None:
    """run.json of a finished run of exactly ``config`` in ``config.out``, else None."""
    if not (Path(config.out) / METADATA).exists():
        return None
    meta = read_metadata(config.out)
    if meta.get("status") == "finished" and meta.get("config") == dataclasses.asdict(config):
        return meta
    return None


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Cosine decay from ``base_lr`` at step 0 towards 0 at ``total_steps``."""
    return 0.5 * base_lr * (1 + math.cos(math.pi * step / max(1, total_steps)))


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63)


def train(config: TrainConfig, *, device: str = "auto", data_dir: str | None = None, download: bool = False,
          resume: bool = False, force: bool = False, progress: bool = True,
          data: DataSplits | None = None) -> dict:
    """Train per ``config`` into ``config.out``; returns the final run.json metadata.

    ``data`` may pass already-loaded splits (must be the ones ``config`` names). Started by
    torchrun, every process calls this and gets rank 0's metadata back.
    """
    with session(device) as procs:
        return _train(config, procs, data_dir=data_dir, download=download, resume=resume, force=force,
                      progress=progress, data=data)


def _train(config: TrainConfig, procs: Processes, *, data_dir: str | None, download: bool, resume: bool,
           force: bool, progress: bool, data: DataSplits | None) -> dict:
    tune_cpu_allocator()
    config.validate()
    procs.check_batch_size(config.batch_size)
    out = Path(config.out)
    previous = _check_output_dir(out, resume, force)
    dev = procs.device
    data = data or load_dataset(config.dataset, data_dir=data_dir, download=download,
                                train_subset=config.train_subset, test_subset=config.test_subset,
                                seed=config.seed, options=config.dataset_options)
    meta = _initial_metadata(config, data, dev, procs.world_size)
    loss_fn = build_loss(config.loss, data.info.num_classes, config.loss_hyper)
    meta["loss_hyper"] = {k: getattr(loss_fn, k) for k in LOSSES.get(config.loss).hyper}
    torch.manual_seed(config.seed)
    model = build_from_metadata(meta)
    if config.init:
        parent_model, parent = load_checkpoint(config.init)
        check_compatible(parent, meta, Path(config.init))
        model.load_state_dict(parent_model.state_dict())
        meta["training"] = "finetune"
        meta["parent"] = {"path": str(config.init), "sha256": file_sha256(Path(config.init) / WEIGHTS),
                          "loss": parent.get("loss")}
    model.to(dev)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    start_epoch = 0
    if previous is not None:
        start_epoch = _restore(previous, meta, model, optimizer, out)
    net = procs.wrap(model)  # DDP for several processes; `model` stays the plain module
    x_train, y_train = data.x_train.to(dev), data.y_train.to(dev)
    steps_per_epoch = len(procs.shard(epoch_batches(data.y_train, config.batch_size, config.samples_per_class,
                                                    torch.Generator().manual_seed(0))))
    total_steps = steps_per_epoch * config.epochs
    clip = config.resolved_grad_clip()
    started = time.perf_counter() - meta["wall_time_s"]
    with EpochProgress(enabled=progress and procs.is_main) as bar:
        for epoch in range(start_epoch, config.epochs):
            t0 = time.perf_counter()
            seed = epoch_seed(config.seed, epoch)
            torch.manual_seed(procs.process_seed(seed))
            batches = procs.shard(epoch_batches(data.y_train, config.batch_size, config.samples_per_class,
                                                torch.Generator().manual_seed(seed)))
            model.train()
            bar.start(f"epoch {epoch + 1}/{config.epochs}", len(batches))
            loss_sum = torch.zeros((), device=dev)
            correct = torch.zeros((), device=dev, dtype=torch.long)
            seen = counted = 0  # rows of the global batches, rows of this process
            lr = cosine_lr(config.lr, epoch * steps_per_epoch, total_steps)
            for step, shard in enumerate(batches):
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(config.lr, epoch * steps_per_epoch + step, total_steps)
                idx = shard.idx.to(dev)
                loss, to_backward, z = procs.objective(loss_fn, net, x_train[idx], y_train[idx], shard.sizes)
                if not torch.isfinite(loss):
                    raise RobenchError(
                        f"training diverged: the {config.loss} loss became {loss.item()} at epoch {epoch + 1}, "
                        f"step {step + 1} (lr {config.lr}, grad clip {clip}); lower --lr or set --grad-clip; "
                        f"{out} keeps the last completed epoch")
                optimizer.zero_grad(set_to_none=True)
                to_backward.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                optimizer.step()
                loss_sum += loss.detach() * shard.total
                correct += (z.detach().argmax(1) == y_train[idx]).sum()
                seen += shard.total
                counted += len(idx)
                if step % 10 == 0 or step == len(batches) - 1:  # .item() syncs a GPU: not every step
                    bar.advance(shard.total, loss=(loss_sum / seen).item(), accuracy=correct.item() / counted)
                else:
                    bar.advance(shard.total)
            procs.average_buffers(model)  # BatchNorm running statistics of all processes
            train_accuracy = procs.all_sum(correct).item() / seen
            if not procs.is_main:
                continue  # rank 0 evaluates and writes; the others go on to the next epoch
            test_acc = accuracy(model, data.x_test, data.y_test, device=dev)
            record = {"epoch": epoch + 1, "loss": (loss_sum / seen).item(), "train_accuracy": train_accuracy,
                      "test_accuracy": test_acc, "seconds": time.perf_counter() - t0, "lr": lr}
            bar.finish(record)
            meta["history"].append(record)
            meta["epochs_done"] = epoch + 1
            meta["test_accuracy"] = test_acc
            meta["best_test_accuracy"] = max(r["test_accuracy"] for r in meta["history"])
            meta["wall_time_s"] = time.perf_counter() - started
            finished = epoch + 1 == config.epochs
            if finished:
                subset = statistics_subset(data.y_test)
                meta["gradient_statistics"] = gradient_statistics(model, data.x_test[subset], data.y_test[subset],
                                                                  device=dev)
            _write_epoch(out, meta, model, optimizer, finished=finished)
    return procs.from_main(meta)


def _check_output_dir(out: Path, resume: bool, force: bool) -> dict | None:
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


def _initial_metadata(config: TrainConfig, data: DataSplits, dev: torch.device, world_size: int = 1) -> dict:
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


def _restore(previous: dict, meta: dict, model, optimizer, out: Path) -> int:
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


def _write_epoch(out: Path, meta: dict, model, optimizer, finished: bool) -> None:
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
    atomic_write_text(out / "train_log.csv", "\n".join(lines) + "\n")
    if finished:
        (out / TRAIN_STATE).unlink(missing_ok=True)
