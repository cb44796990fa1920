"""``robench run RECIPE``: plan a recipe's work (:mod:`robench.plan`), then train, attack, audit, snapshot and report.

Every level resumes: a finished run is reused, an interrupted one continues from its last
epoch, CSV rows already present are skipped, existing audit and latent files are kept. The
local executor (default) runs the jobs one after another in this process; ``--executor ray``
runs them as Ray tasks (:mod:`robench.executors`) into the same files. The report runs last.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from robench.audit import run_audit
from robench.checkpoints import METADATA, WEIGHTS, read_metadata
from robench.errors import RobenchError
from robench.plan import (Plan, PlannedAudit, PlannedRun, PlannedSweep, build_plan,  # noqa: F401  (re-exported)
                          describe_plan, pending_work)
from robench.progress import PlanProgress, console
from robench.results import atomic_write_bytes, atomic_write_json, environment, file_sha256, utc_now
from robench.sweep import run_sweep
from robench.train import train

if TYPE_CHECKING:
    from robench.executors import RayOptions

TRAIN_LOG = "train_log.csv"


def execute_plan(plan: Plan, *, device: str = "auto", data_dir: str | None = None, download: bool = False,
                 progress: bool = True) -> dict:
    """Do whatever the plan still needs, one job after another in this process (``--executor local``)."""
    from robench.devices import resolve_device
    from robench.latent import write_latent

    dev = resolve_device(device)
    started, env = utc_now(), environment(dev)  # the code that runs is the code at start
    todo = pending_work(plan)
    timings: dict[str, float] = {}
    jobs = len(todo.runs) + len(todo.sweeps) + len(todo.latent) + len(todo.audits) + 1
    with PlanProgress(jobs, enabled=progress) as bar:
        for run in plan.runs:
            if run in todo.runs:
                bar.job(f"train {run.name}")
                t0 = time.perf_counter()
                train(run.config, device=device, data_dir=data_dir, download=download, resume=True, progress=progress)
                timings[f"train {run.name}"] = time.perf_counter() - t0
                bar.done()
            copy_run_files(run, plan.results_dir / "runs" / run.name)
        for sw in todo.sweeps:
            bar.job(f"{sw.step.attack} on {sw.dataset}")
            t0 = time.perf_counter()
            run_sweep(sw.spec, device=device, data_dir=data_dir, download=download, progress=progress)
            key = sweep_timing_key(sw)
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
            bar.done()
        for audit in todo.audits:
            bar.job(f"audit {audit.run.name}")
            t0 = time.perf_counter()
            run_audit(audit.run.config.out, audit.config, csv=audit.csv, out_json=audit.out_json,
                      transfer_from=audit.transfer_from, device=device, data_dir=data_dir, download=download,
                      progress=progress)
            timings[f"audit {audit.run.name}"] = time.perf_counter() - t0
            bar.done()
        for run in todo.latent:
            bar.job(f"latent {run.name}")
            t0 = time.perf_counter()
            write_latent(run.config.out, plan.latent_path(run), plan.recipe.latent, device=dev, data_dir=data_dir,
                         download=download)
            timings[f"latent {run.name}"] = time.perf_counter() - t0
            bar.done()
        manifest = build_manifest(plan, started, env, timings) if todo.worked else None
        written = finish_plan(plan, todo.worked, manifest, bar)
    return plan_summary(plan, todo.worked, written)


def sweep_timing_key(sw: PlannedSweep) -> str:
    return f"{sw.step.attack} {'/'.join(sw.spec.backends)} {sw.spec.sweep} {sw.dataset}"


def finish_plan(plan: Plan, worked: bool, manifest: dict | None, bar: PlanProgress) -> list[Path]:
    """The plan's last job, on the driver: write the manifest (when work was done), then the report."""
    if worked:
        atomic_write_json(plan.results_dir / "manifest.json", manifest)
    bar.job("report")
    from robench.report import write_report

    written = write_report(plan.results_dir, compare_paper=plan.recipe.report.compare_paper)
    bar.done()
    return written


def plan_summary(plan: Plan, worked: bool, written: list[Path]) -> dict:
    if not worked:
        console.print(f"{plan.recipe.name}: nothing to do (every run, row and snapshot exists); report rewritten")
    return {"worked": worked, "report": [str(p) for p in written]}


def copy_run_files(run: PlannedRun, dest: Path) -> None:
    for name in (METADATA, TRAIN_LOG):
        source = Path(run.config.out) / name
        data = source.read_bytes()
        target = dest / name
        if not target.exists() or target.read_bytes() != data:
            atomic_write_bytes(target, data)


def build_manifest(plan: Plan, started: str, env: dict, timings: dict) -> dict:
    runs = []
    for run in plan.runs:
        meta = read_metadata(run.config.out)
        runs.append({"run": run.name, "checkpoint": run.config.out, "parent": meta.get("parent"),
                     "weights_sha256": file_sha256(Path(run.config.out) / WEIGHTS),
                     "test_accuracy": meta["test_accuracy"], "best_test_accuracy": meta["best_test_accuracy"],
                     "train_wall_time_s": meta["wall_time_s"], "trained_at_commit": meta["environment"]["git_commit"]})
    return {"name": plan.recipe.name, "recipe_file": plan.recipe.path, "scale": plan.recipe.scale,
            "description": plan.recipe.description, "recipe": dataclasses.asdict(plan.recipe),
            "seeds": list(plan.recipe.train.seeds), "started_at": started, "finished_at": utc_now(),
            "environment": env, "runs": runs, "seconds_this_invocation": timings}


def run_recipe(path: str | Path, *, results_root: str | Path = "results", runs_root: str | Path = "runs",
               device: str = "auto", data_dir: str | None = None, download: bool = False, dry_run: bool = False,
               progress: bool = True, executor: str = "local", ray_options: RayOptions | None = None) -> str:
    """Load, plan and (unless ``dry_run``) execute a recipe; returns the plan text.

    ``executor``: ``local`` runs the jobs one after another here; ``ray`` runs them as Ray tasks
    (:mod:`robench.executors`, configured by ``ray_options``).
    """
    from robench.executors import check_executor, execute_plan_ray
    from robench.recipes import load_recipe

    check_executor(executor, ray_options)
    plan = build_plan(load_recipe(path), results_root, runs_root)
    text = describe_plan(plan)
    if dry_run:
        return text
    for run in plan.runs:
        if run.parent and not any(r.name == run.parent for r in plan.runs):
            raise RobenchError(f"{run.name} fine-tunes {run.parent}, which the recipe does not train")
    if executor == "ray":
        execute_plan_ray(plan, ray_options, device=device, data_dir=data_dir, download=download,
                         progress=progress)
    else:
        execute_plan(plan, device=device, data_dir=data_dir, download=download, progress=progress)
    return text
