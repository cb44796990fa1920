"""``robench run`` and ``robench report``: a recipe end to end, and its report from stored results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from robench.cli.options import DataDirOpt, DeviceOpt, QuietOpt, fail
from robench.errors import RobenchError
from robench.progress import console


def run(
    recipe: Annotated[Path, typer.Argument(help="A recipe file, e.g. recipes/quickstart.toml.")],
    results: Annotated[Path, typer.Option(help="Results root: writes RESULTS/<recipe name>/.")] = Path("results"),
    runs: Annotated[Path, typer.Option(help="Checkpoint root: writes RUNS/<recipe name>/<run>/ (keep it out of git).")]
    = Path("runs"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and what is already done; do nothing.")]
    = False,
    data_dir: Annotated[Optional[Path], typer.Option(help=DataDirOpt)] = None,
    download: Annotated[bool, typer.Option("--download", help="Download datasets that are missing.")] = False,
    device: DeviceOpt = "auto",
    executor: Annotated[str, typer.Option(rich_help_panel="Executor",
        help="local: one job after another in this process; ray: every training run, (checkpoint, attack) sweep, "
             "audit and latent snapshot a Ray task (pip install -e '.\\[ray]').")] = "local",
    address: Annotated[Optional[str], typer.Option(rich_help_panel="Executor",
        help="--executor ray: the cluster to join (auto, or ray://HEAD:10001); default: start a local Ray "
             "instance.")] = None,
    cpus_per_task: Annotated[int, typer.Option(rich_help_panel="Executor",
        help="--executor ray: CPUs (torch threads) per task; with a CUDA device each task also takes one GPU.")] = 1,
    ray_cpus: Annotated[Optional[int], typer.Option(rich_help_panel="Executor",
        help="--executor ray without --address: CPUs of the local Ray instance (default: this machine's usable "
             "cores).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Run a recipe end to end: train every run, attack every checkpoint, snapshot latents, write the report.

    Resumable: finished runs, epochs, CSV rows and snapshots are kept, so after a crash or Ctrl-C the same
    command continues where it stopped. `--dry-run` shows the plan. `--executor ray` runs the jobs as Ray
    tasks on a cluster (`--address`) or a local Ray instance, into the same files.
    """
    from robench.pipeline.ray_executor import RayOptions
    from robench.pipeline.run import run_recipe
    from robench.training.distributed import torchrun_world_size

    try:
        if torchrun_world_size() > 1:
            raise RobenchError("robench run cannot itself run under torchrun (every process would attack and write "
                               "the same files); use --executor ray to spread a recipe, torchrun for one "
                               "robench train")
        options = RayOptions(address=address, cpus_per_task=cpus_per_task, num_cpus=ray_cpus)
        typer.echo(run_recipe(recipe, results_root=results, runs_root=runs, device=device,
                              data_dir=str(data_dir) if data_dir else None, download=download, dry_run=dry_run,
                              progress=not quiet, executor=executor, ray_options=options))
    except RobenchError as exc:
        fail(exc)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: finished epochs and rows are saved; run the same command to resume")
        raise typer.Exit(code=130)


def report(
    results_dir: Annotated[Path, typer.Argument(
        help="A results directory written by robench run (e.g. results/quickstart), or an attacks CSV.")],
    compare_paper: Annotated[bool | None, typer.Option(
        "--compare-paper/--no-compare-paper", show_default=False,
        help="Put the paper's Table I numbers beside ours. Default: as the recipe that wrote the directory says "
             "([report] compare_paper in its manifest.json), else no.")] = None,
) -> None:
    """Rebuild Table I (CSV, Markdown, LaTeX), Figs. 2-7 and the robustness and audit tables from a results
    directory, or the figures and a robustness table from a bare attacks CSV (robench attack's --out)."""
    from robench.report.write import write_report

    try:
        written = write_report(results_dir, compare_paper=compare_paper)
    except RobenchError as exc:
        fail(exc)
    for path in written:
        typer.echo(str(path))
