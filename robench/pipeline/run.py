"""``robench run RECIPE``: load a recipe, plan it, and execute the plan locally or on Ray.

:mod:`robench.pipeline.plan` says what the recipe implies and what is already done;
:mod:`robench.pipeline.local_executor` runs the jobs in this process, :mod:`robench.pipeline.ray_executor`
as Ray tasks into the same files. The report is written last.
"""

from __future__ import annotations

from pathlib import Path

from robench.checks import check_count
from robench.errors import RobenchError
from robench.files import check_directory_target
from robench.pipeline.local_executor import execute_plan
from robench.pipeline.plan import build_plan, describe_plan
from robench.pipeline.ray_executor import RayOptions, execute_plan_ray
from robench.pipeline.recipe_toml import load_recipe
from robench.progress import console

EXECUTORS = ("local", "ray")


def check_executor(executor: str, options: RayOptions | None) -> None:
    """A known executor, and Ray options only with ``--executor ray``."""
    if executor not in EXECUTORS:
        raise RobenchError(f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    if options is None:
        return
    if executor == "local" and options != RayOptions():
        raise RobenchError("--address, --cpus-per-task and --ray-cpus apply to --executor ray only")
    check_count(options.cpus_per_task, "--cpus-per-task")
    if options.num_cpus is not None and (options.num_cpus < 1 or options.address is not None):
        raise RobenchError("--ray-cpus sizes the local Ray instance: give a positive number and no --address")
    if options.num_cpus is not None:
        check_count(options.num_cpus, "--ray-cpus")


def run_recipe(path: str | Path, *, results_root: str | Path = "results", runs_root: str | Path = "runs",
               device: str = "auto", data_dir: str | None = None, download: bool = False, dry_run: bool = False,
               progress: bool = True, executor: str = "local", ray_options: RayOptions | None = None) -> str:
    """Load, plan and (unless ``dry_run``) execute a recipe; returns the plan text (``dry_run``) or the closing
    summary (what was trained, attacked, audited, how long, where the results are). The plan is shown first.

    ``executor``: ``local`` runs the jobs one after another here; ``ray`` runs them as Ray tasks
    (:mod:`robench.pipeline.ray_executor`, configured by ``ray_options``).
    """
    check_executor(executor, ray_options)
    recipe = load_recipe(path)
    for flag, root in (("--results", Path(results_root)), ("--runs", Path(runs_root))):
        for target in (root, root / recipe.name):  # before planning reads or writes anything
            check_directory_target(target, flag)
    plan = build_plan(recipe, results_root, runs_root)
    text = describe_plan(plan)
    if dry_run:
        return text
    for run in plan.runs:
        if run.parent and not any(r.name == run.parent for r in plan.runs):
            raise RobenchError(f"{run.name} fine-tunes {run.parent}, which the recipe does not train")
    if progress:
        console.print(text, highlight=False)
    if executor == "ray":
        outcome = execute_plan_ray(plan, ray_options, device=device, data_dir=data_dir, download=download,
                                   progress=progress)
    else:
        outcome = execute_plan(plan, device=device, data_dir=data_dir, download=download, progress=progress)
    return outcome["summary"]
