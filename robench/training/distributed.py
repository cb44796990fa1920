"""Several processes for one training run: ``torchrun`` + DistributedDataParallel.

``torchrun --nproc_per_node N -m robench train ...`` starts N copies of the command; each
finds ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in its environment and :func:`session`
joins them into one process group (gloo on CPU, nccl on ``cuda:LOCAL_RANK``). Without
those variables (``python -m robench train``) everything here is a no-op: one process.

What the processes share, so that the run means what a single-process run means:

* **Batches.** Every process draws the same seeded epoch batches and takes the rows
  r, r + W, r + 2W, ... of each global batch (W processes, rank r): the global batch is
  the single-process batch, ``batch_size / W`` rows per process (strided, so a
  class-balanced batch gives every process rows of every class). A last partial batch with
  fewer rows than processes is skipped (at most W − 1 images an epoch).
* **Losses of the whole batch** (``whole_batch = True``: GCCS, whose class means and
  covariances are batch statistics, Ali et al. eq. 1): z and y are all-gathered, the local z
  is put back in its own slot so autograd flows through it, and every process computes the
  loss of the global batch. Each process back-propagates through its own rows only and DDP
  averages gradients over the W processes, so the loss is back-propagated times W: the
  parameter gradient is the single-process gradient of the global-batch loss.
* **Per-sample mean losses** (``ce``, ``jacobian``, ``input-grad``, ``cross-lipschitz``):
  each process takes the mean over its n_r rows; weighted by W·n_r/N for the backward pass,
  DDP's average is the mean over the N rows of the global batch (also for an uneven last
  batch). The value logged is that global mean.
* **BatchNorm: per-process statistics**, as in plain DDP (``SyncBatchNorm`` runs on GPUs
  only, and the gradient-penalty losses treat batch statistics as constants of the local
  batch). So with BatchNorm in training mode a run on W processes normalises over
  ``batch_size / W`` rows and is close to, not bit-equal with, a single-process run. The
  running statistics are averaged over the processes at the end of every epoch (as timm's
  ``distribute_bn``), before rank 0 evaluates and saves them.
* **Dropout** draws from a generator seeded by (seed, epoch, rank).

Rank 0 alone evaluates test accuracy (on the whole test set, as in a single process),
shows progress bars and writes the checkpoint, ``run.json`` (with ``world_size``) and the
log; the other ranks only train. Every rank reads the run directory, so ``--resume`` works
(also with a different number of processes: the global batch does not change).
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from robench.devices import resolve_device
from robench.errors import RobenchError

TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Shard:
    """This process's rows ``idx`` of one global batch, and every process's row count."""

    idx: torch.Tensor
    sizes: tuple[int, ...]

    @property
    def total(self) -> int:
        """Rows of the global batch."""
        return sum(self.sizes)


@dataclass(frozen=True)
class Processes:
    """The processes of one training run (``world_size = 1``: a plain single-process run)."""

    world_size: int = 1
    rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that evaluates, logs and writes."""
        return self.rank == 0

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.world_size:
            raise RobenchError(
                f"--batch-size {batch_size} is not divisible by the {self.world_size} processes: each process "
                f"trains on batch-size / processes rows; choose a multiple of {self.world_size}")

    def shard(self, batches: Sequence[torch.Tensor]) -> list[Shard]:
        """This process's rows of each global batch (strided); batches smaller than W are dropped."""
        w, r = self.world_size, self.rank
        return [Shard(idx[r::w], tuple(len(idx[k::w]) for k in range(w))) for idx in batches if len(idx) >= w]

    def process_seed(self, seed: int) -> int:
        """The global-RNG seed (dropout, shake-shake) of this process for a run-wide ``seed``."""
        return (seed + 104_729 * self.rank) % (2**63)

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DistributedDataParallel (rank 0's weights win); itself for one process.

        Buffers are synced at construction but not at every forward pass (that in-place copy is
        not allowed inside the ``torch.func.vjp`` of the gradient-penalty losses);
        :meth:`average_buffers` syncs them once an epoch instead.
        """
        if self.world_size == 1:
            return model
        ddp = nn.parallel.DistributedDataParallel
        new_name = "forward_sync_buffers" in inspect.signature(ddp).parameters  # torch >= 2.14
        no_forward_sync = {"forward_sync_buffers" if new_name else "broadcast_buffers": False}
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return ddp(model, device_ids=device_ids, **no_forward_sync)

    def average_buffers(self, model: nn.Module) -> None:
        """Average floating-point buffers (BatchNorm running statistics) over the processes."""
        if self.world_size == 1:
            return
        for buffer in model.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer.div_(self.world_size)

    def objective(self, loss_fn: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  sizes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss of the global batch, tensor to back-propagate, local z)`` for this process's rows.

        One process: ``loss_fn.objective``'s value, twice. W processes: see the module docstring;
        the first value is the same on every process, so all of them stop together on a NaN.
        """
        if self.world_size == 1:
            loss, z = loss_fn.objective(model, x, y)
            return loss, loss, z
        if getattr(loss_fn, "whole_batch", False):
            z = model(x)
            loss = loss_fn(gather_rows(z, sizes, self.rank), gather_rows(y, sizes, self.rank))
            return loss.detach(), loss * self.world_size, z
        loss, z = loss_fn.objective(model, x, y)
        share = len(y) / sum(sizes)
        value = loss.detach() * share
        dist.all_reduce(value)
        return value, loss * (share * self.world_size), z

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` summed over the processes (a copy; ``value`` itself for one process)."""
        if self.world_size == 1:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total

    def from_main(self, obj):
        """Rank 0's ``obj`` on every process (a picklable object, e.g. the run's metadata)."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]


def gather_rows(t: torch.Tensor, sizes: Sequence[int], rank: int) -> torch.Tensor:
    """All processes' rows of ``t`` (n_rank, ...) concatenated in rank order: (sum(sizes), ...).

    Process k holds ``sizes[k]`` rows (uneven counts are padded for ``all_gather``). The own
    slot is ``t`` itself, so gradients flow to this process's rows; the others are constants.
    """
    padded = t.new_zeros((max(sizes), *t.shape[1:]))
    padded[: len(t)] = t.detach()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    parts = [part[:n] for part, n in zip(parts, sizes)]
    parts[rank] = t
    return torch.cat(parts)


def torchrun_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``); 1 without torchrun."""
    return _env_int("WORLD_SIZE") or 1


def is_main_process() -> bool:
    """False in the processes torchrun started with ``RANK`` > 0 (they should print nothing)."""
    return (_env_int("RANK") or 0) == 0


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[Processes]:
    """The processes of this run, on ``device`` (``auto``/``cpu``/``cuda``).

    Under torchrun (``WORLD_SIZE`` > 1) it initialises the process group (gloo on CPU, nccl
    on ``cuda:LOCAL_RANK``) and destroys it on exit; a group the caller initialised is used
    as it is and left alone.
    """
    if dist.is_available() and dist.is_initialized():
        world, rank, local_rank = dist.get_world_size(), dist.get_rank(), _env_int("LOCAL_RANK")
        yield Processes(world, rank, _process_device(device, world, rank if local_rank is None else local_rank))
        return
    world = torchrun_world_size()
    if world == 1:
        yield Processes(1, 0, resolve_device(device))
        return
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise RobenchError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: start several processes with "
                           f"torchrun --nproc_per_node N -m robench train ...")
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if not 0 <= rank < world:
        raise RobenchError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
    dev = _process_device(device, world, local_rank)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    try:
        yield Processes(world, rank, dev)
    except BaseException:
        dist.destroy_process_group()          # no barrier: the other processes may never reach it
        raise
    # DistributedDataParallel's reducer holds the process group and sits in reference cycles, so
    # without a collection it outlives destroy_process_group and is freed during interpreter
    # shutdown, where gloo's threads abort the process ("terminate called without an active
    # exception": about 1 torchrun run in 10 on a loaded 2-core machine, after training finished).
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def _process_device(device: str, world: int, local_rank: int) -> torch.device:
    """``--device`` for one of ``world`` processes: CUDA means ``cuda:LOCAL_RANK``."""
    dev = resolve_device(device)
    if world == 1 or dev.type != "cuda":
        return dev
    if dev.index is not None:
        raise RobenchError(f"--device {device} cannot be used with torchrun: process LOCAL_RANK uses "
                           f"cuda:LOCAL_RANK; pass --device cuda or auto")
    if local_rank >= torch.cuda.device_count():
        raise RobenchError(f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} GPUs; "
                           f"lower --nproc_per_node")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise RobenchError(f"environment variable {name}={value!r} is not a whole number (torchrun sets it)") from None
