"""Training on several processes (torchrun + DDP): gathered GCCS batch, gradient scale, whole runs.

Two CPU processes with gloo, started once for the module with torch.multiprocessing (spawn)
and the torchrun environment variables, so :func:`robench.training.distributed.session` joins them
exactly as under torchrun. Each process writes what it measured to a JSON file; the tests
compare that with single-process computations here. One test runs the real
``torchrun ... -m robench train`` command line.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import SYNTH

import robench.training.loop as train_module
from robench.data import load_dataset
from robench.errors import RobenchError
from robench.losses import LOSSES, build_loss
from robench.models.checkpoints import build_from_metadata
from robench.training.config import TrainConfig
from robench.training.distributed import Processes, gather_rows, session
from robench.training.loop import train
from robench.training.run_dir import initial_metadata

WORLD = 2
GLOBAL_ROWS = 27  # an odd global batch: shards of 14 and 13 rows test the uneven weighting
RUN = dict(dataset="synthetic", dataset_options=dict(SYNTH), model="small-cnn", model_options={"hidden": 16},
           batch_size=32)
RUNS = {  # name -> (loss, epochs, loss hyper-parameters); mu = 10 as in test_train (few steps)
    "gccs": ("gccs", 6, {"mu": 10.0}),
    "ce": ("ce", 6, {}),
}


DETERMINISTIC_LOSSES = [name for name in LOSSES.names() if name not in ("pgd-at", "trades")]
"""Losses whose step is a function of the batch alone. pgd-at and trades start each example from a
random draw, and W processes draw their shards' starts from W generators, so their sharded step can't
equal one process's; tests/test_adversarial_training.py checks their crafting on the unwrapped module."""

def _model_and_batch():
    """A float64 small-cnn in eval mode (z_b depends on x_b alone) and a seeded global batch."""
    data = load_dataset("synthetic", options=SYNTH)
    meta = initial_metadata(TrainConfig(out="unused", epochs=1, loss="ce", **RUN), data, torch.device("cpu"))
    torch.manual_seed(0)
    model = build_from_metadata(meta).double().eval()
    idx = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(1))[:GLOBAL_ROWS]
    return model, data.x_train[idx].double(), data.y_train[idx]


def _gradient(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def _sharded_step(procs: Processes, loss_name: str) -> tuple[float, list[float]]:
    """Loss and DDP-averaged parameter gradient of one step on this process's shard."""
    model, x, y = _model_and_batch()
    loss_fn = build_loss(loss_name, SYNTH["num_classes"])
    (shard,) = procs.shard([torch.arange(len(y))])
    net = procs.wrap(model)  # must outlive backward(): its reducer averages the gradients
    loss, to_backward, _ = procs.objective(loss_fn, net, x[shard.idx], y[shard.idx], shard.sizes)
    to_backward.backward()
    return loss.item(), _gradient(model).tolist()


def _worker(rank: int, port: int, tmp: str) -> None:
    os.environ.update(WORLD_SIZE=str(WORLD), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    result: dict = {"writes": 0}
    real_write = train_module.write_epoch

    def counting_write(*args, **kwargs):
        result["writes"] += 1
        real_write(*args, **kwargs)

    train_module.write_epoch = counting_write
    with session("cpu") as procs:
        result["world_size"], result["rank"] = procs.world_size, procs.rank
        labels = gather_rows(torch.full((rank + 1,), rank), [1, 2], rank)  # uneven sizes: padded and cut
        result["gathered_labels"] = labels.tolist()
        norm = torch.nn.BatchNorm1d(2)
        norm.running_mean.fill_(rank)
        procs.average_buffers(norm)
        result["averaged_buffer"] = norm.running_mean.tolist() + [norm.num_batches_tracked.item()]
        result["steps"] = {name: _sharded_step(procs, name) for name in DETERMINISTIC_LOSSES}
        result["runs"] = {}
        for name, (loss, epochs, hyper) in RUNS.items():
            meta = train(TrainConfig(out=f"{tmp}/{name}", loss=loss, epochs=epochs, loss_hyper=hyper, **RUN),
                         device="cpu", progress=False)
            result["runs"][name] = {k: meta[k] for k in ("history", "world_size", "status")}
        try:
            train(TrainConfig(out=f"{tmp}/odd", loss="ce", epochs=1, **{**RUN, "batch_size": 33}), device="cpu")
        except RobenchError as exc:
            result["odd_batch_error"] = str(exc)
        _killed_and_resumed(procs, tmp, result)
    Path(tmp, f"rank{rank}.json").write_text(json.dumps(result))


def _killed_and_resumed(procs: Processes, tmp: str, result: dict) -> None:
    """Three epochs straight, and the same killed (on every process) after epoch 1, then resumed."""
    config = dict(loss="gccs", epochs=3, loss_hyper={"mu": 10.0}, **RUN)
    train(TrainConfig(out=f"{tmp}/full", **config), device="cpu", progress=False)
    real_sum, calls = Processes.all_sum, []

    def die_in_epoch_two(self, value):
        calls.append(1)
        if len(calls) == 2:  # end of epoch 2, before rank 0 writes it: every process stops here
            raise KeyboardInterrupt
        return real_sum(self, value)

    Processes.all_sum = die_in_epoch_two
    try:
        train(TrainConfig(out=f"{tmp}/killed", **config), device="cpu", progress=False)
    except KeyboardInterrupt:
        result["killed_at_epochs_done"] = json.loads(Path(tmp, "killed", "run.json").read_text())["epochs_done"]
    finally:
        Processes.all_sum = real_sum
    meta = train(TrainConfig(out=f"{tmp}/killed", **config), device="cpu", progress=False, resume=True)
    result["resumed_at_epoch"] = meta["resumed_at_epoch"]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """What each of two gloo processes measured (a list indexed by rank), and their run directory."""
    tmp = tmp_path_factory.mktemp("ddp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workers = mp.start_processes(_worker, args=(port, str(tmp)), nprocs=WORLD, start_method="spawn", join=False)
    deadline = time.monotonic() + 180  # a collective that never completes must not hang the suite
    while not workers.join(timeout=1):
        if time.monotonic() > deadline:
            for process in workers.processes:
                process.kill()
            pytest.fail("the two training processes did not finish within 180 s")
    return [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(WORLD)], tmp


@pytest.fixture(scope="module")
def single_process_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    torch.set_num_threads(1)
    return {name: train(TrainConfig(out=str(tmp / name), loss=loss, epochs=epochs, loss_hyper=hyper, **RUN),
                        device="cpu", progress=False)
            for name, (loss, epochs, hyper) in RUNS.items()}


def test_processes_join_from_the_torchrun_environment(two_processes):
    results, _ = two_processes
    assert [(r["world_size"], r["rank"]) for r in results] == [(2, 0), (2, 1)]
    assert all(r["gathered_labels"] == [0, 1, 1] for r in results)
    assert all(r["averaged_buffer"] == [0.5, 0.5, 0] for r in results)  # BatchNorm running statistics


@pytest.mark.parametrize("loss_name", DETERMINISTIC_LOSSES)
def test_sharded_step_equals_the_single_process_step_on_the_global_batch(two_processes, loss_name):
    """Loss value and DDP-averaged parameter gradient equal one process's on all 27 rows.

    gccs is computed on the gathered batch and back-propagated ×W; the per-sample means are
    weighted by W·n_r/N (here 14 and 13 of 27 rows). In float64 the differences are rounding
    (measured: ≤ 4e-16 relative); the tolerance 1e-12 is far below what dropping the gather,
    the ×W or the weighting does (relative errors of order 0.1–1).
    """
    model, x, y = _model_and_batch()
    loss, _ = build_loss(loss_name, SYNTH["num_classes"]).objective(model, x, y)
    loss.backward()
    reference = _gradient(model)
    for result in two_processes[0]:
        value, grad = result["steps"][loss_name]
        assert value == pytest.approx(loss.item(), rel=1e-12)
        error = (torch.tensor(grad, dtype=torch.float64) - reference).abs().max() / reference.abs().max()
        assert error <= 1e-12, error


@pytest.mark.parametrize("name", RUNS)
def test_two_process_run_converges_like_a_single_process_run(two_processes, single_process_runs, name):
    """Same global batches and schedule, but BatchNorm statistics (16 rows per process instead of
    32) and dropout draws differ, so the runs are close, not equal. Tolerance: the spread of
    single-process runs over seeds 0-4 (measured final loss 89-144 for gccs, 0.31-0.78 for ce;
    final train accuracy 0.73-0.98): best test accuracy >= 90 % for both (test_train's bar),
    final test accuracy within 10 points, final train accuracy within 15 points, final loss
    within a factor 1.5 (measured: 110.6 vs 123.6 for gccs, 0.42 vs 0.36 for ce)."""
    results, tmp = two_processes
    single = single_process_runs[name]["history"]
    runs = [r["runs"][name] for r in results]
    assert runs[0] == runs[1]  # every process returns rank 0's metadata
    assert runs[0]["world_size"] == 2 and runs[0]["status"] == "finished"
    double = runs[0]["history"]
    assert len(double) == len(single)
    assert max(h["test_accuracy"] for h in double) >= 0.9, double
    assert max(h["test_accuracy"] for h in single) >= 0.9, single
    assert all(0 <= h["train_accuracy"] <= 1 for h in double)
    assert abs(double[-1]["test_accuracy"] - single[-1]["test_accuracy"]) <= 0.1
    assert abs(double[-1]["train_accuracy"] - single[-1]["train_accuracy"]) <= 0.15
    assert 1 / 1.5 <= double[-1]["loss"] / single[-1]["loss"] <= 1.5, (double[-1], single[-1])
    saved = json.loads((tmp / name / "run.json").read_text())
    assert saved["world_size"] == 2 and saved["history"] == double


def test_only_rank_zero_writes(two_processes):
    results, _ = two_processes
    assert results[0]["writes"] > 0 and results[1]["writes"] == 0


def test_indivisible_batch_is_a_clear_error_on_every_process(two_processes):
    results, tmp = two_processes
    for result in results:
        assert "--batch-size 33 is not divisible by the 2 processes" in result["odd_batch_error"]
    assert not (tmp / "odd").exists()


def test_resume_on_two_processes_matches_an_uninterrupted_run(two_processes):
    results, tmp = two_processes
    assert all(r["killed_at_epochs_done"] == 1 and r["resumed_at_epoch"] == [1] for r in results)
    from safetensors.torch import load_file

    full, resumed = load_file(tmp / "full" / "model.safetensors"), load_file(tmp / "killed" / "model.safetensors")
    assert full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), key


def test_torchrun_command_line(tmp_path):
    """``torchrun --nproc_per_node 2 -m robench train`` end to end: one finished run, rank 0's files."""
    options = [f"--dataset-option={k}={v}" for k, v in SYNTH.items()]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "robench", "train", "--dataset", "synthetic", *options, "--model", "small-cnn",
               "--model-option", "hidden=16", "--loss", "gccs", "--mu", "10", "--epochs", "2", "--batch-size", "32",
               "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["status"] == "finished" and meta["world_size"] == 2 and meta["epochs_done"] == 2
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model.safetensors", "run.json", "train_log.csv"]
    assert "Traceback" not in done.stderr


def test_shards_are_strided_uneven_and_skip_tiny_batches():
    batches = [torch.arange(10, 20), torch.arange(5), torch.arange(1)]
    shards = Processes(world_size=2, rank=1).shard(batches)
    assert [s.idx.tolist() for s in shards] == [[11, 13, 15, 17, 19], [1, 3]]
    assert [s.sizes for s in shards] == [(5, 5), (3, 2)] and shards[1].total == 5
    single = Processes().shard(batches)
    assert [s.idx.tolist() for s in single] == [b.tolist() for b in batches]


@pytest.mark.parametrize("env,match", [
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "0"}, "LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set"),
    ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
     "RANK=2 is outside 0..1"),
])
def test_a_broken_torchrun_environment_is_a_clear_error(monkeypatch, env, match):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RobenchError, match=match):
        with session("cpu"):
            pass


def test_a_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with session("cpu") as procs:
        assert (procs.world_size, procs.rank, procs.is_main, procs.device) == (1, 0, True, torch.device("cpu"))
        assert not torch.distributed.is_initialized()
