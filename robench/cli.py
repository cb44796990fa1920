"""The ``robench`` command line (Typer). Each command parses its options and makes one library call.

Bad input raises :class:`RobenchError`, printed here as one red line with exit code 2.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from robench.errors import RobenchError
from robench.progress import console

app = typer.Typer(
    name="robench",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Train classifiers with robust losses (GCCS and baselines) and benchmark them honestly under attack.\n\n"
    "Start with `robench quickstart`, then `robench train --help` and `robench attack --help`.",
)

DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA if available, else CPU), cpu or cuda.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or per-epoch lines.")]


class Kind(str, Enum):
    datasets = "datasets"
    models = "models"
    losses = "losses"
    attacks = "attacks"


def _fail(exc: RobenchError) -> None:
    console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)  # '.[ray]' is no markup
    raise typer.Exit(code=2)


def _parse_options(pairs: list[str] | None, flag: str) -> dict:
    """``key=value`` strings to a dict; values parsed as JSON when possible (numbers, lists)."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise RobenchError(f"{flag} expects key=value, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


@app.command("list")
def list_(kind: Annotated[Kind, typer.Argument(help="What to list: datasets, models, losses or attacks.")]) -> None:
    """List registered datasets, models, losses or attacks with one-line descriptions."""
    from robench.attacks import ATTACKS
    from robench.data import DATASETS
    from robench.losses import LOSSES
    from robench.models import MODELS

    registry = {"datasets": DATASETS, "models": MODELS, "losses": LOSSES, "attacks": ATTACKS}[kind.value]
    width = max(len(n) for n in registry.names())
    for entry in registry.entries():
        typer.echo(f"{entry.name:<{width}}  {entry.description}")


@app.command()
def train(
    dataset: Annotated[str, typer.Option(rich_help_panel="Data", help="Dataset name (robench list datasets).")],
    model: Annotated[str, typer.Option(rich_help_panel="Model", help="Model name (robench list models).")],
    loss: Annotated[str, typer.Option(rich_help_panel="Loss", help="Loss name (robench list losses).")],
    out: Annotated[Path, typer.Option(help="Run directory to write: model.safetensors, run.json, train_log.csv.")],
    epochs: Annotated[int, typer.Option(rich_help_panel="Optimisation", help="Number of epochs (the paper used 1800).")] = 10,
    batch_size: Annotated[int, typer.Option(rich_help_panel="Optimisation", help="Mini-batch size.")] = 128,
    lr: Annotated[float, typer.Option(rich_help_panel="Optimisation", help="Initial learning rate, cosine-decayed to 0 (paper: 0.01).")] = 0.01,
    momentum: Annotated[float, typer.Option(rich_help_panel="Optimisation", help="SGD momentum.")] = 0.9,
    weight_decay: Annotated[float, typer.Option(rich_help_panel="Optimisation", help="Weight decay (paper: 0.001).")] = 1e-3,
    grad_clip: Annotated[Optional[float], typer.Option(rich_help_panel="Optimisation", 
        help="Max global gradient norm; 0 disables. Default: the loss's (gccs: 5, others: none).")] = None,
    mu: Annotated[Optional[float], typer.Option(rich_help_panel="Loss", help="GCCS: distance mu_T of the class targets mu_T*e_i (70).")] = None,
    sigma: Annotated[Optional[float], typer.Option(rich_help_panel="Loss", help="GCCS: target standard deviation sigma_T (1).")] = None,
    kurtosis_weight: Annotated[Optional[float], typer.Option(rich_help_panel="Loss", help="GCCS: weight lambda of the kurtosis term (0.2).")] = None,
    covariance: Annotated[Optional[str], typer.Option(rich_help_panel="Loss", 
        help="GCCS: 'full' (eq. 1) or 'diag' (diagonal covariance, for many classes).")] = None,
    reg_weight: Annotated[Optional[float], typer.Option(rich_help_panel="Loss",
        help="jacobian / input-grad / cross-lipschitz: weight lambda of the gradient penalty "
             "(defaults: see robench list losses and the README).")] = None,
    jacobian_projections: Annotated[Optional[int], typer.Option(rich_help_panel="Loss",
        help="jacobian: estimate ||J||_F^2 from K random projections (Hoffman et al. 2019) instead of "
             "all D rows; 0 = exact.")] = None,
    samples_per_class: Annotated[Optional[int], typer.Option(rich_help_panel="Optimisation", 
        help="Class-balanced batches: K rows of each of batch-size/K classes (use for many classes with GCCS).")] = None,
    model_option: Annotated[Optional[list[str]], typer.Option("--model-option", 
        rich_help_panel="Model", help="Architecture option key=value, e.g. width=0.25 (repeatable).")] = None,
    dataset_option: Annotated[Optional[list[str]], typer.Option("--dataset-option", 
        rich_help_panel="Data", help="Dataset option key=value, e.g. num_classes=5 for synthetic (repeatable).")] = None,
    init: Annotated[Optional[Path], typer.Option(rich_help_panel="Optimisation", 
        help="Fine-tune: start from this run directory (same dataset and model), recorded as training=finetune.")] = None,
    train_subset: Annotated[Optional[int], typer.Option(rich_help_panel="Data", help="Use a seeded class-stratified subset of N training images.")] = None,
    test_subset: Annotated[Optional[int], typer.Option(rich_help_panel="Data", help="Use a seeded class-stratified subset of N test images.")] = None,
    seed: Annotated[int, typer.Option(rich_help_panel="Optimisation", help="Seed for initialisation, shuffling, dropout and subsets.")] = 0,
    data_dir: Annotated[Optional[Path], typer.Option(rich_help_panel="Data", 
        help="Dataset directory (default: $ROBENCH_DATA or ~/.cache/robench/data).")] = None,
    download: Annotated[bool, typer.Option("--download", rich_help_panel="Data", help="Download the dataset through torchvision if it is missing.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an unfinished run in --out from its last completed epoch.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a finished or unfinished run in --out.")] = False,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Train a classifier with a loss and write a checkpoint (model.safetensors + run.json)."""
    from robench.train import TrainConfig, train as run_training

    try:
        hyper = {k: v for k, v in {"mu": mu, "sigma": sigma, "kurtosis_weight": kurtosis_weight,
                                   "covariance": covariance, "reg_weight": reg_weight,
                                   "projections": jacobian_projections}.items() if v is not None}
        config = TrainConfig(
            dataset=dataset, model=model, loss=loss, out=str(out), epochs=epochs,
            dataset_options=_parse_options(dataset_option, "--dataset-option"),
            model_options=_parse_options(model_option, "--model-option"), loss_hyper=hyper,
            batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay, grad_clip=grad_clip,
            samples_per_class=samples_per_class, train_subset=train_subset, test_subset=test_subset,
            seed=seed, init=str(init) if init else None)
        meta = run_training(config, device=device, data_dir=str(data_dir) if data_dir else None,
                            download=download, resume=resume, force=force, progress=not quiet)
    except RobenchError as exc:
        _fail(exc)
    from robench.distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 alone reports
        return
    typer.echo(f"{out}: {meta['loss']} on {meta['dataset']}/{meta['model']}, {meta['epochs_done']} epochs, "
               f"test accuracy {meta['test_accuracy']:.4f} (best {meta['best_test_accuracy']:.4f})")


def _split(values: list[str] | None) -> list[str]:
    """Repeatable options that also accept comma-separated lists: ["pgd,tgsm", "jsma"] -> [...]."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


@app.command()
def attack(
    checkpoint: Annotated[list[Path], typer.Option(help="Run directory to attack (repeatable).")],
    out: Annotated[Path, typer.Option(help="CSV to append rows to (created if missing; existing rows are kept).")],
    attack_names: Annotated[list[str], typer.Option(
        "--attack", help="pgd, tgsm, jsma; apgd, square (through ART); transfer (repeatable or comma-separated; "
                         "robench list attacks).")] = ["pgd"],
    eps_grid: Annotated[str, typer.Option(help="ε values: 0,0.01,0.02 or start:stop:num (inclusive).")] = "0,0.01,0.02,0.05,0.1",
    eps_mode: Annotated[str, typer.Option(help="relative: ||n||∞ <= ε·||x||∞ per image (the paper's); absolute: ||n||∞ <= ε.")]
    = "relative",
    backend: Annotated[Optional[list[str]], typer.Option(
        help="native or art (repeatable or comma-separated; default: native, art for apgd and square).")] = None,
    steps: Annotated[Optional[int], typer.Option(
        help="Iterations (default: pgd 5, tgsm 5, jsma 200, apgd 100, square 1000 queries, transfer 20).")] = None,
    step_size: Annotated[Optional[float], typer.Option(
        help="Step as a fraction of ε (default: pgd 2.5/steps, tgsm 1/steps).")] = None,
    restarts: Annotated[int, typer.Option(help="pgd: random starts, keeping the worst per image.")] = 1,
    attack_loss: Annotated[str, typer.Option(
        help="pgd/tgsm/apgd/transfer objective: ce (the paper's), margin (Carlini-Wagner) or dlr (Croce-Hein).")]
    = "ce",
    transfer_from: Annotated[Optional[Path], typer.Option(
        help="transfer: the run directory the PGD examples are crafted on (e.g. the cross-entropy model).")] = None,
    n_samples: Annotated[Optional[int], typer.Option(
        help="Evaluate a seeded class-stratified subset of N test images (default: all).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per attack batch.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the evaluated subset and of random starts.")] = 0,
    sweep: Annotated[str, typer.Option(
        help="cumulative: an image broken at a smaller ε stays broken (worst case, cheaper); "
             "independent: every ε from scratch (the paper's protocol).")] = "cumulative",
    data_dir: Annotated[Optional[Path], typer.Option(help="Dataset directory (default: $ROBENCH_DATA or ~/.cache/robench/data).")] = None,
    download: Annotated[bool, typer.Option("--download", help="Download the dataset if it is missing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Recompute rows already in --out (they are replaced).")] = False,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Attack checkpoints over a grid of ε and append accuracy-vs-ε rows to a tidy CSV."""
    from robench.attacks import ATTACKS, default_backend
    from robench.epsilon import EPS_MODES, parse_eps_grid
    from robench.sweep import SweepSpec, run_sweep

    try:
        if eps_mode not in EPS_MODES:
            raise RobenchError(f"unknown --eps-mode {eps_mode!r}; choose one of: {', '.join(EPS_MODES)}")
        names = _split(attack_names)
        for name in names:
            ATTACKS.entry(name)  # unknown names fail before any work
        # without --backend each attack runs on its default backend (ART for the ART-only ones)
        groups = [(tuple(names), tuple(_split(backend)))] if backend else \
            [(tuple(n for n in names if default_backend(n) == b), (b,)) for b in ("native", "art")]
        specs = [SweepSpec(
            checkpoints=tuple(str(c) for c in checkpoint), attacks=attacks, backends=backends,
            eps_grid=tuple(parse_eps_grid(eps_grid)), out=str(out), eps_mode=eps_mode, steps=steps,
            step_size=step_size, restarts=restarts, attack_loss=attack_loss, n_samples=n_samples,
            batch_size=batch_size, seed=seed, sweep=sweep, source=str(transfer_from) if transfer_from else None)
            for attacks, backends in groups if attacks]
        rows = []
        for spec in specs:
            rows += run_sweep(spec, device=device, data_dir=str(data_dir) if data_dir else None, download=download,
                              force=force, progress=not quiet)
    except RobenchError as exc:
        _fail(exc)
    typer.echo(f"{out}: {len(rows)} new row(s)")
    for row in rows:
        target = f"  target success {row['target_success']:.4f}" if row["target_success"] is not None else ""
        typer.echo(f"  {Path(row['checkpoint']).name:<28} {row['attack']:<5} {row['backend']:<6} "
                   f"eps {row['eps']:<8g} accuracy {row['accuracy']:.4f}{target}")


@app.command()
def inspect(run_dir: Annotated[Path, typer.Argument(help="A run directory written by robench train.")]) -> None:
    """Print a run's facts: data, model, loss, training mode, accuracy, history and provenance."""
    from robench.inspection import describe_run

    try:
        typer.echo(describe_run(run_dir))
    except RobenchError as exc:
        _fail(exc)


@app.command()
def quickstart(
    out: Annotated[Path, typer.Option(help="Where to put the two runs (ce/ and gccs/).")] = Path("runs/quickstart"),
    epochs: Annotated[int, typer.Option(help="Epochs per run.")] = 30,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Retrain even if finished runs exist in --out.")] = False,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Train small-cnn with ce and gccs on the bundled digits data (about a minute on CPU) and compare."""
    from robench.quickstart import run_quickstart

    try:
        typer.echo(run_quickstart(out, epochs=epochs, seed=seed, force=force, device=device, progress=not quiet))
    except RobenchError as exc:
        _fail(exc)


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="A recipe file, e.g. recipes/quickstart.toml.")],
    results: Annotated[Path, typer.Option(help="Results root: writes RESULTS/<recipe name>/.")] = Path("results"),
    runs: Annotated[Path, typer.Option(help="Checkpoint root: writes RUNS/<recipe name>/<run>/ (keep it out of git).")]
    = Path("runs"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and what is already done; do nothing.")]
    = False,
    data_dir: Annotated[Optional[Path], typer.Option(help="Dataset directory (default: $ROBENCH_DATA or ~/.cache/robench/data).")] = None,
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
    from robench.distributed import torchrun_world_size
    from robench.executors import RayOptions
    from robench.runner import run_recipe

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
        _fail(exc)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: finished epochs and rows are saved; run the same command to resume")
        raise typer.Exit(code=130)


@app.command()
def report(
    results_dir: Annotated[Path, typer.Argument(help="A results directory written by robench run, e.g. results/quickstart.")],
    compare_paper: Annotated[bool, typer.Option("--compare-paper", help="Put the paper's Table I numbers beside ours.")]
    = False,
) -> None:
    """Rebuild Table I (CSV, Markdown, LaTeX) and Figs. 2-6 from a results directory's CSVs and run metadata."""
    from robench.report import write_report

    try:
        written = write_report(results_dir, compare_paper=compare_paper)
    except RobenchError as exc:
        _fail(exc)
    for path in written:
        typer.echo(str(path))


from robench.cli_audit import audit  # noqa: E402  (registered here so `robench --help` lists it in order)

app.command()(audit)


def main() -> None:
    app()
