"""``robench run --executor local`` (the default): a plan's jobs one after another in this process.

Training runs first (fine-tuning after its parent), then the attack sweeps, the audits and the
latent snapshots, then the manifest and the report (:mod:`robench.pipeline.finish`). Every job
resumes: a finished run is reused, CSV rows already present are skipped, existing audit and
latent files are kept.
"""

from __future__ import annotations

import time

from robench.devices import resolve_device
from robench.evaluation.audit import run_audit
from robench.evaluation.latent import write_latent
from robench.evaluation.sweep import run_sweep
from robench.pipeline.costs import (LATENT_COST, audit_cost, run_cost, sweep_cost, total_cost)
from robench.pipeline.finish import (Done, build_manifest, copy_run_files, finish_plan, plan_summary, sweep_timing_key)
from robench.pipeline.plan import Plan, pending_work
from robench.progress import PlanProgress
from robench.provenance import environment, utc_now
from robench.training.loop import train


def execute_plan(plan: Plan, *, device: str = "auto", data_dir: str | None = None, download: bool = False,
                 progress: bool = True) -> dict:
    """Do whatever the plan still needs, one job after another in this process (``--executor local``)."""
    dev = resolve_device(device)
    started, env = utc_now(), environment(dev)  # the code that runs is the code at start
    todo = pending_work(plan)
    timings: dict[str, float] = {}
    done, t_start = Done(), time.perf_counter()
    with PlanProgress(total_cost(plan, todo), enabled=progress) as bar:
        for run in plan.runs:
            if run in todo.runs:
                bar.job(f"train {run.name}")
                t0 = time.perf_counter()
                train(run.config, device=device, data_dir=data_dir, download=download, resume=True, progress=progress)
                timings[f"train {run.name}"] = time.perf_counter() - t0
                done.trained.append(run.name)
                bar.done(run_cost(run))
            copy_run_files(run, plan.results_dir / "runs" / run.name)
        for sw in todo.sweeps:
            bar.job(f"{sw.step.attack} on {sw.dataset}")
            t0 = time.perf_counter()
            cost = sweep_cost(sw)
            done.add_rows(run_sweep(sw.spec, device=device, data_dir=data_dir, download=download, progress=progress))
            key = sweep_timing_key(sw)
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
            bar.done(cost)
        for audit in todo.audits:
            bar.job(f"audit {audit.run.name}")
            t0 = time.perf_counter()
            report = run_audit(audit.run.config.out, audit.config, csv=audit.csv, out_json=audit.out_json,
                               transfer_from=audit.transfer_from, device=device, data_dir=data_dir,
                               download=download, progress=progress)
            timings[f"audit {audit.run.name}"] = time.perf_counter() - t0
            done.audits[audit.run.name] = report["verdict"]
            bar.done(audit_cost(audit))
        for run in todo.latent:
            bar.job(f"latent {run.name}")
            t0 = time.perf_counter()
            write_latent(run.config.out, plan.latent_path(run), plan.recipe.latent, device=dev, data_dir=data_dir,
                         download=download)
            timings[f"latent {run.name}"] = time.perf_counter() - t0
            done.latent += 1
            bar.done(LATENT_COST)
        manifest = build_manifest(plan, started, env, timings) if todo.worked else None
        written = finish_plan(plan, todo.worked, manifest, bar)
    done.seconds = time.perf_counter() - t_start
    return plan_summary(plan, todo.worked, written, done)
