"""``robench run --executor ray``: every job of a plan as a Ray task, on a cluster or a local Ray instance.

What becomes a task: each training run still to do, each (checkpoint, attack step) sweep with rows
missing, each audit and each latent snapshot still to do. The driver keeps the dependencies: it
submits a job once the jobs it needs have finished — fine-tuning after its cross-entropy parent;
sweeps, audits and snapshots after their checkpoint; an audit also after the sweeps of its
checkpoint (whose rows it reuses) and the cross-entropy run it transfers from. The manifest and
the report are written last, on the driver. Each task asks for ``cpus_per_task`` CPUs (its torch
threads) and, when the device is CUDA, one GPU.

CSV writes: the driver is the only writer of the results' store and ``attacks.csv``; a sweep or
audit task writes its rows into a store in its own staging folder, which the driver merges when
the task has finished (:mod:`robench.pipeline.staging`). Row values equal the local executor's
(every row has its own seed), only ``seconds`` differs, and the CSV's rows are in the store's
canonical order, whoever ran them. A worker that dies loses only its job, which Ray re-runs
(``max_retries``) in the same staging folder, keeping the rows it had finished. Every node must
see the working directory at the same path (a shared filesystem) and have robench installed;
``ROBENCH_DATA`` is passed on to the workers.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from robench.devices import DEVICE_CHOICES
from robench.errors import RobenchError
from robench.evaluation.audit import AUDIT_JSON, run_audit
from robench.evaluation.latent import write_latent
from robench.evaluation.store import ResultStore
from robench.evaluation.sweep import run_sweep
from robench.files import atomic_write_json
from robench.pipeline.costs import REPORT_COST
from robench.pipeline.finish import (Done, build_manifest, copy_run_files, finish_plan, plan_summary, sweep_timing_key)
from robench.pipeline.plan import Pending, Plan, PlannedRun, pending_work
from robench.pipeline.staging import STAGING, merge_leftovers, merge_staged, stage
from robench.progress import PlanProgress
from robench.provenance import environment, utc_now
from robench.training.loop import train

WORKER_FACTS = ("platform", "device", "device_name", "torch_threads")


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None    # an existing cluster ("auto", "ray://head:10001"); None: start a local instance
    cpus_per_task: int = 1        # CPUs (torch threads) per task; CUDA tasks also take one GPU
    num_cpus: int | None = None   # CPUs of the local instance; None: the cores this process may use
    max_retries: int = 3          # re-runs of a task whose worker died


@dataclass(frozen=True)
class Job:
    key: str                       # unique in the plan; names the staging folder of CSV jobs
    timing: str                    # its key in the manifest's seconds_this_invocation
    fn: Callable                   # module-level, runs in the worker
    kwargs: dict
    deps: tuple[str, ...] = ()     # keys of the jobs it waits for
    run: PlannedRun | None = None  # training: copy run.json and the log into the results when done
    staged: Path | None = None     # sweeps and audits: the staging folder the driver merges
    out_json: Path | None = None   # audits: where the staged audit.json goes


def plan_jobs(plan: Plan, todo: Pending, *, download: bool = False) -> list[Job]:
    """The plan's pending work as jobs with dependencies, in plan order (training first)."""
    staging = plan.results_dir / STAGING
    trains = {r.name: f"train-{r.name}" for r in todo.runs}
    after = lambda *names: tuple(trains[n] for n in names if n in trains)  # noqa: E731
    first: dict[str, str] = {}   # with --download, the first run of a dataset fetches it alone
    jobs = []
    for run in todo.runs:
        lead = first.setdefault(run.config.dataset, run.name) if download else run.name
        jobs.append(Job(trains[run.name], f"train {run.name}", train_job, {"config": run.config},
                        after(run.parent, lead if lead != run.name else None), run=run))
    by_out = {r.config.out: r for r in plan.runs}
    sweeps_of: dict[str, list[str]] = {}
    for i, sw in enumerate(plan.sweeps):
        if sw not in todo.sweeps:
            continue
        csv = Path(sw.spec.out)
        for checkpoint, missing in sw.missing_by_checkpoint().items():
            if not missing:
                continue
            run = by_out[checkpoint]
            key = f"sweep{i}-{sw.step.attack}-{run.name}"
            spec = replace(sw.spec, checkpoints=(checkpoint,), out=str(staging / key / csv.name))
            jobs.append(Job(key, sweep_timing_key(sw), sweep_job, {"spec": spec, "csv": str(csv)},
                            after(run.name), staged=staging / key))
            sweeps_of.setdefault(run.name, []).append(key)
    for audit in todo.audits:
        name, key = audit.run.name, f"audit-{audit.run.name}"
        source = next((r.name for r in plan.runs if r.config.out == audit.transfer_from), None)
        jobs.append(Job(key, f"audit {name}", audit_job,
                        {"checkpoint": audit.run.config.out, "config": audit.config, "csv": str(audit.csv),
                         "staged": str(staging / key), "transfer_from": audit.transfer_from},
                        after(name, source) + tuple(sweeps_of.get(name, ())), staged=staging / key,
                        out_json=audit.out_json))
    for run in todo.latent:
        jobs.append(Job(f"latent-{run.name}", f"latent {run.name}", latent_job,
                        {"run_dir": run.config.out, "out": str(plan.latent_path(run)), "step": plan.recipe.latent},
                        after(run.name)))
    return jobs


# --- what runs in a worker ---------------------------------------------------------------------------------

def execute_job(cwd: str, threads: int, device: str, fn: Callable, kwargs: dict) -> dict:
    """The body of every task: ``fn`` in the driver's working directory; returns its seconds and where it ran."""
    if not os.path.isdir(cwd):
        raise RobenchError(f"{cwd} does not exist on node {os.uname().nodename}: --executor ray needs the working "
                           "directory on a filesystem every node shares")
    os.chdir(cwd)
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    fn(device=device, **kwargs)
    env = environment(torch.device(device))
    return {"seconds": time.perf_counter() - t0, **{k: env[k] for k in WORKER_FACTS}}


def train_job(*, config, device, data_dir, download) -> None:
    train(config, device=device, data_dir=data_dir, download=download, resume=True, progress=False)


def sweep_job(*, spec, csv, device, data_dir, download) -> None:
    stage(Path(csv), Path(spec.out), spec.checkpoints[0])
    run_sweep(spec, device=device, data_dir=data_dir, download=download, progress=False)


def audit_job(*, checkpoint, config, csv, staged, transfer_from, device, data_dir, download) -> None:
    staged, csv = Path(staged), Path(csv)
    stage(csv, staged / csv.name, checkpoint)
    report = run_audit(checkpoint, config, csv=staged / csv.name, out_json=staged / f".{AUDIT_JSON}",
                       transfer_from=transfer_from, device=device, data_dir=data_dir, download=download,
                       progress=False)
    atomic_write_json(staged / AUDIT_JSON, {**report, "csv": str(csv)})  # as the local run records it


def latent_job(*, run_dir, out, step, device, data_dir, download) -> None:
    write_latent(run_dir, out, step, device=torch.device(device), data_dir=data_dir, download=download)


# --- what the driver does -----------------------------------------------------------------------------------

def _import_ray():
    try:
        import ray
    except ImportError:
        raise RobenchError("--executor ray needs Ray: pip install -e '.[ray]'") from None
    return ray


def _connect(ray, options: RayOptions) -> bool:
    """Join ``options.address`` or start a local instance; True if this call started Ray (and must stop it)."""
    if ray.is_initialized():
        return False
    common = dict(log_to_driver=False, logging_level=logging.ERROR)
    if os.environ.get("ROBENCH_DATA"):  # workers look for datasets where the driver does
        common["runtime_env"] = {"env_vars": {"ROBENCH_DATA": os.environ["ROBENCH_DATA"]}}
    try:
        if options.address:
            _reachable(options.address)
            ray.init(address=options.address, **common)
        else:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            ray.init(num_cpus=options.num_cpus or cores, include_dashboard=False,
                     object_store_memory=256 * 1024 ** 2, **common)  # jobs pass small objects only
    except (OSError, RuntimeError, ValueError) as exc:
        what = f"join the Ray cluster at {options.address}" if options.address else "start a local Ray instance"
        raise RobenchError(f"cannot {what}: {exc}") from None
    return True


def _reachable(address: str) -> None:
    """Fail fast on a HOST:PORT nobody answers at (Ray itself would retry for many minutes)."""
    host, sep, port = address.rpartition(":")
    if sep and host and "://" not in address and port.isdigit():
        with socket.create_connection((host, int(port)), timeout=10):
            pass


def _resources(ray, device: str, options: RayOptions) -> tuple[str, dict]:
    """The device tasks use (cuda if asked for, or auto and the cluster has GPUs) and their Ray resources."""
    gpus = ray.cluster_resources().get("GPU", 0)
    use_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
    if use_gpu and gpus < 1:
        raise RobenchError(f"--device {device} was asked for but the Ray cluster has no GPU; use --device cpu or auto")
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=0)
    if options.cpus_per_task > largest:
        raise RobenchError(f"--cpus-per-task {options.cpus_per_task}: no node of the Ray cluster has that many CPUs "
                           f"(the largest has {largest:g})")
    return ("cuda" if use_gpu else "cpu"), {"num_cpus": options.cpus_per_task, "num_gpus": int(use_gpu),
                                            "max_retries": options.max_retries}


def _failure(ray, job: Job, exc: Exception, retries: int) -> Exception:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, RobenchError):
        return RobenchError(f"{job.timing}: {cause}")
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.OutOfMemoryError)):
        times = f"{retries + 1} times" if retries else "and max_retries is 0"
        return RobenchError(f"{job.timing}: its worker died {times} ({type(exc).__name__}); finished rows are kept, "
                            "run the same command to resume")
    return exc  # a bug: keeps its traceback


def execute_plan_ray(plan: Plan, options: RayOptions | None = None, *, device: str = "auto",
                     data_dir: str | None = None, download: bool = False, progress: bool = True) -> dict:
    """Do whatever the plan still needs as Ray tasks; returns what :func:`robench.pipeline.local_executor.execute_plan` returns."""
    options = options or RayOptions()
    ray = _import_ray()
    if device not in DEVICE_CHOICES and not device.startswith("cuda:"):
        raise RobenchError(f"unknown device {device!r}; choose one of: {', '.join(DEVICE_CHOICES)}")
    started = utc_now()
    env = environment(torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"))
    merge_leftovers(plan)
    for csv in {Path(sw.spec.out) for sw in plan.sweeps} | {a.csv for a in plan.audits}:
        ResultStore(csv).adopt()  # workers stage from the store: take over an older CSV (and its records) first
    todo = pending_work(plan)
    jobs = plan_jobs(plan, todo, download=download)
    for run in plan.runs:
        if run not in todo.runs:
            copy_run_files(run, plan.results_dir / "runs" / run.name)
    timings: dict[str, float] = {}
    done, t_start = Done(), time.perf_counter()
    executor = {"name": "ray", "address": options.address or "local instance", "cpus_per_task": options.cpus_per_task}
    with PlanProgress(len(jobs) + REPORT_COST, enabled=progress) as bar:
        if jobs:
            facts = _run_jobs(ray, plan, jobs, options, device, {"data_dir": data_dir, "download": download},
                              timings, bar, done)
            env = {**env, **facts}
            executor.update(ray_version=ray.__version__, gpus_per_task=int(facts["device"].startswith("cuda")))
        manifest = {**build_manifest(plan, started, env, timings), "executor": executor} if todo.worked else None
        written = finish_plan(plan, todo.worked, manifest, bar)
    done.seconds = time.perf_counter() - t_start
    return plan_summary(plan, todo.worked, written, done)


def _run_jobs(ray, plan: Plan, jobs: list[Job], options: RayOptions, device: str, data: dict, timings: dict,
              bar: PlanProgress, done: Done) -> dict:
    """Submit each job once its dependencies are done, merge what finishes; returns a worker's facts."""
    started_ray = _connect(ray, options)
    running: dict = {}
    try:
        task_device, resources = _resources(ray, device, options)
        task = ray.remote(execute_job)
        waiting, finished, failure, facts = list(jobs), set(), None, {}
        while waiting or running:
            for job in [j for j in waiting if failure is None and set(j.deps) <= finished]:
                waiting.remove(job)
                ref = task.options(name=job.key, **resources).remote(
                    os.getcwd(), options.cpus_per_task, task_device, job.fn, {**job.kwargs, **data})
                running[ref] = job
            if not running:
                break
            bar.job(f"{len(running)} running, {len(waiting)} waiting")
            (ref,), _ = ray.wait(list(running), num_returns=1)
            job = running.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the first failure stops new submissions
                failure = failure or _failure(ray, job, exc, options.max_retries)
                continue
            if job.run is not None:
                copy_run_files(job.run, plan.results_dir / "runs" / job.run.name)
                done.trained.append(job.run.name)
            if job.staged is not None:
                done.rows += merge_staged(job.staged, plan.results_dir, job.out_json)
            if job.out_json is not None and job.out_json.is_file():
                done.audits[job.key.removeprefix("audit-")] = json.loads(job.out_json.read_text())["verdict"]
            if job.fn is latent_job:
                done.latent += 1
            timings[job.timing] = timings.get(job.timing, 0.0) + result.pop("seconds")
            facts = facts or result
            finished.add(job.key)
            bar.done()
        if failure is not None:
            raise failure
        return facts
    finally:
        for ref in running:  # Ctrl-C or an error: stop what still runs; its staged rows merge next time
            ray.cancel(ref, force=True)
        if started_ray:
            ray.shutdown()
