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
DistributedDataParallel; :mod:`robench.training.distributed` says what is split, what is gathered
and what only rank 0 does.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from rich.markup import escape

from robench.allocator import tune_cpu_allocator
from robench.data import DataSplits, load_dataset
from robench.errors import RobenchError
from robench.files import file_sha256
from robench.losses import LOSSES, build_loss
from robench.models.checkpoints import (build_from_metadata, check_compatible, load_checkpoint)
from robench.models.memory_format import place
from robench.models.run_layout import WEIGHTS
from robench.progress import EpochProgress, console
from robench.training.accuracy import accuracy
from robench.training.batches import epoch_batches
from robench.training.config import TrainConfig
from robench.training.distributed import Processes, session
from robench.training.gradient_stats import gradient_statistics, statistics_subset
from robench.training.run_dir import (check_output_dir, initial_metadata, restore, thread_warning, write_epoch)


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Cosine decay from ``base_lr`` at step 0 towards 0 at ``total_steps``."""
    return 0.5 * base_lr * (1 + math.cos(math.pi * step / max(1, total_steps)))


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (shuffling, dropout), in 0..2^63-1, so a resumed run redraws the same."""
    return (seed * 1_000_003 + epoch * 7919) % (2**63)


def train(config: TrainConfig, *, device: str = "auto", data_dir: str | None = None, download: bool = False,
          resume: bool = False, force: bool = False, progress: bool = True,
          data: DataSplits | None = None) -> dict:
    """Train per ``config`` into ``config.out``; returns the final run.json metadata.

    ``data`` may pass already-loaded splits (must be the ones ``config`` names). Started by
    torchrun, every process calls this and gets rank 0's metadata back. With ``resume``, a run
    already finished with exactly ``config`` is returned as it is, without training.
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
    previous = check_output_dir(out, resume, force, config)
    if previous is not None and previous.get("status") == "finished":
        return procs.from_main(previous)  # --resume of a run already finished with this config: nothing to do
    dev = procs.device
    data = data or load_dataset(config.dataset, data_dir=data_dir, download=download,
                                train_subset=config.train_subset, test_subset=config.test_subset,
                                seed=config.seed, options=config.dataset_options)
    meta = initial_metadata(config, data, dev, procs.world_size)
    loss_fn = build_loss(config.loss, data.info.num_classes, config.resolved_loss_hyper())  # eps: per dataset
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
    place(model, dev)  # channels-last on CPU: same numbers, faster (robench.models.memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    start_epoch = 0
    if previous is not None:
        start_epoch = restore(previous, meta, model, optimizer, out)
        warning = thread_warning(previous, dev) if start_epoch else None  # from epoch 0, nothing to match
        if warning and procs.is_main:
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
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
            bar.start(f"{Path(config.out).name} epoch {epoch + 1}/{config.epochs}", len(batches))
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
            write_epoch(out, meta, model, optimizer, finished=finished)
    return procs.from_main(meta)
