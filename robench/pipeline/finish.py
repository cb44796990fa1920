"""What both executors do around the jobs: copy run metadata into the results, write the manifest,
then the report, and say what happened.

The manifest records the resolved recipe, versions, git commit, device, seeds, every checkpoint's
SHA-256 and parent, and the seconds each kind of job took in this invocation.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from robench.files import atomic_write_bytes, atomic_write_json, file_sha256
from robench.models.checkpoints import read_metadata
from robench.models.run_layout import METADATA, WEIGHTS
from robench.pipeline.costs import REPORT_COST
from robench.pipeline.plan import Plan, PlannedRun, PlannedSweep
from robench.progress import PlanProgress, console
from robench.provenance import utc_now
from robench.report.write import write_report
from robench.training.run_dir import TRAIN_LOG

STALE = "stale"


def sweep_timing_key(sw: PlannedSweep) -> str:
    return f"{sw.step.attack} {'/'.join(sw.spec.backends)} {sw.spec.sweep} {sw.dataset}"


def finish_plan(plan: Plan, worked: bool, manifest: dict | None, bar: PlanProgress) -> list[Path]:
    """The plan's last job, on the driver: write the manifest (when work was done), set aside what the
    recipe no longer has, then write the report."""
    if worked:
        atomic_write_json(plan.results_dir / "manifest.json", manifest)
    set_aside_stale(plan)
    bar.job("report")
    written = write_report(plan.results_dir, compare_paper=plan.recipe.report.compare_paper)
    bar.done(REPORT_COST)
    return written


def set_aside_stale(plan: Plan) -> list[Path]:
    """Move run metadata (with its audit.json) and latent snapshots of runs the recipe no longer has into
    ``<results>/stale/``, where the report does not look; returns where they went."""
    names = {run.name for run in plan.runs}
    leftovers = [d for d in sorted((plan.results_dir / "runs").glob("*")) if d.is_dir() and d.name not in names]
    leftovers += [f for f in sorted((plan.results_dir / "latent").glob("*.safetensors")) if f.stem not in names]
    moved = []
    for path in leftovers:
        target = plan.results_dir / STALE / path.relative_to(plan.results_dir)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        moved.append(target)
    if moved:
        console.print(f"{plan.recipe.name}: set aside {len(moved)} file(s) of runs the recipe no longer has, "
                      f"in {plan.results_dir / STALE}")
    return moved


@dataclass
class Done:
    """What an execution of a plan did, for its closing summary."""

    trained: list[str] = field(default_factory=list)
    rows: int = 0
    stale: int = 0
    audits: dict[str, str] = field(default_factory=dict)    # run -> verdict
    latent: int = 0
    seconds: float = 0.0

    def add_rows(self, rows: list[dict]) -> None:
        self.rows += len(rows)
        self.stale += sum(row.get("replaced") == "stale" for row in rows)


def plan_summary(plan: Plan, worked: bool, written: list[Path], done: Done | None = None) -> dict:
    """The closing summary of ``robench run``: what was trained, attacked, audited, how long, where it is."""
    done = done or Done()
    if not worked:
        text = f"{plan.recipe.name}: nothing to do (every run, row, audit and snapshot exists); report rewritten"
    else:
        lines = [f"{plan.recipe.name}: done in {duration(done.seconds)}"]
        if done.trained:
            lines.append(f"  trained {len(done.trained)} run(s): {', '.join(done.trained)}")
        if done.rows:
            stale = f", {done.stale} of them replacing stale rows of retrained checkpoints" if done.stale else ""
            lines.append(f"  attacked: {done.rows} new row(s) in {plan.results_dir / 'attacks.csv'}{stale}")
        if done.audits:
            lines.append("  audited: " + ", ".join(f"{run} {verdict}" for run, verdict in done.audits.items()))
        if done.latent:
            lines.append(f"  latent snapshots: {done.latent}")
        lines.append(f"  results: {plan.results_dir}/ ({len(written)} report files); checkpoints: {plan.runs_dir}/")
        text = "\n".join(lines)
    return {"worked": worked, "report": [str(p) for p in written], "summary": text}


def duration(seconds: float) -> str:
    """``95 s`` or ``3 min 20 s``."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


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
