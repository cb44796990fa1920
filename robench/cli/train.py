"""``robench train``, ``robench quickstart`` and ``robench inspect``: making and reading run directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from robench.cli.options import DataDirOpt, DeviceOpt, QuietOpt, fail, parse_options
from robench.errors import RobenchError


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
    grad_clip: Annotated[float | None, typer.Option(rich_help_panel="Optimisation", 
        help="Max global gradient norm; 0 disables. Default: the loss's (gccs: 5, others: none).")] = None,
    mu: Annotated[float | None, typer.Option(rich_help_panel="Loss", help="GCCS: distance mu_T of the class targets mu_T*e_i (70).")] = None,
    sigma: Annotated[float | None, typer.Option(rich_help_panel="Loss", help="GCCS: target standard deviation sigma_T (1).")] = None,
    kurtosis_weight: Annotated[float | None, typer.Option(rich_help_panel="Loss", help="GCCS: weight lambda of the kurtosis term (0.2).")] = None,
    covariance: Annotated[str | None, typer.Option(rich_help_panel="Loss", 
        help="GCCS: 'full' (eq. 1) or 'diag' (diagonal covariance, for many classes).")] = None,
    reg_weight: Annotated[float | None, typer.Option(rich_help_panel="Loss",
        help="jacobian / input-grad / cross-lipschitz: weight lambda of the gradient penalty "
             "(defaults: see robench list losses and the README).")] = None,
    jacobian_projections: Annotated[int | None, typer.Option(rich_help_panel="Loss",
        help="jacobian: estimate ||J||_F^2 from K random projections (Hoffman et al. 2019) instead of "
             "all D rows; 0 = exact.")] = None,
    at_eps: Annotated[float | None, typer.Option(rich_help_panel="Loss",
        help="pgd-at / trades: L-inf radius eps of the examples crafted in every step (default per dataset: mnist "
             "0.3, fashion-mnist 0.1, svhn/cifar10/cifar100 8/255, digits/synthetic 0.1).")] = None,
    at_eps_mode: Annotated[str | None, typer.Option(rich_help_panel="Loss",
        help="pgd-at / trades: 'absolute' (||delta||_inf <= eps, the default) or 'relative' (<= eps*||x||_inf, "
             "as robench attack --eps-mode relative).")] = None,
    at_steps: Annotated[int | None, typer.Option(rich_help_panel="Loss",
        help="pgd-at / trades: PGD steps of 2.5*eps/steps crafting each example (pgd-at 7, trades 10).")] = None,
    trades_beta: Annotated[float | None, typer.Option(rich_help_panel="Loss",
        help="trades: weight beta of the KL term (6).")] = None,
    samples_per_class: Annotated[int | None, typer.Option(rich_help_panel="Optimisation", 
        help="Class-balanced batches: K rows of each of batch-size/K classes (use for many classes with GCCS).")] = None,
    model_option: Annotated[list[str] | None, typer.Option("--model-option", 
        rich_help_panel="Model", help="Architecture option key=value, e.g. width=0.25 (repeatable).")] = None,
    dataset_option: Annotated[list[str] | None, typer.Option("--dataset-option", 
        rich_help_panel="Data", help="Dataset option key=value, e.g. num_classes=5 for synthetic (repeatable).")] = None,
    init: Annotated[Path | None, typer.Option(rich_help_panel="Optimisation", 
        help="Fine-tune: start from this run directory (same dataset and model), recorded as training=finetune.")] = None,
    train_subset: Annotated[int | None, typer.Option(rich_help_panel="Data", help="Use a seeded class-stratified subset of N training images.")] = None,
    test_subset: Annotated[int | None, typer.Option(rich_help_panel="Data", help="Use a seeded class-stratified subset of N test images.")] = None,
    seed: Annotated[int, typer.Option(rich_help_panel="Optimisation", help="Seed for initialisation, shuffling, dropout and subsets.")] = 0,
    data_dir: Annotated[Path | None, typer.Option(rich_help_panel="Data", 
        help=DataDirOpt)] = None,
    download: Annotated[bool, typer.Option("--download", rich_help_panel="Data", help="Download the dataset through torchvision if it is missing.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an unfinished run in --out from its last completed epoch (a run already finished "
                                           "with this command is left as it is).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a finished or unfinished run in --out.")] = False,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Train a classifier with a loss and write a checkpoint (model.safetensors + run.json)."""
    from robench.training.config import TrainConfig, finished_metadata
    from robench.training.loop import train as run_training
    from robench.training.run_dir import accuracy_text

    try:
        hyper = {k: v for k, v in {"mu": mu, "sigma": sigma, "kurtosis_weight": kurtosis_weight,
                                   "covariance": covariance, "reg_weight": reg_weight,
                                   "projections": jacobian_projections, "eps": at_eps, "eps_mode": at_eps_mode,
                                   "steps": at_steps, "beta": trades_beta}.items() if v is not None}
        config = TrainConfig(
            dataset=dataset, model=model, loss=loss, out=str(out), epochs=epochs,
            dataset_options=parse_options(dataset_option, "--dataset-option"),
            model_options=parse_options(model_option, "--model-option"), loss_hyper=hyper,
            batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay, grad_clip=grad_clip,
            samples_per_class=samples_per_class, train_subset=train_subset, test_subset=test_subset,
            seed=seed, init=str(init) if init else None)
        config.validate()
        done = finished_metadata(config) if resume and not force else None
        meta = run_training(config, device=device, data_dir=str(data_dir) if data_dir else None,
                            download=download, resume=resume, force=force, progress=not quiet)
    except RobenchError as exc:
        fail(exc)
    from robench.training.distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 alone reports
        return
    if done is not None:
        typer.echo(f"{out}: already finished ({meta['epochs_done']} epochs, test accuracy {accuracy_text(meta)})")
        return
    typer.echo(f"{out}: {meta['loss']} on {meta['dataset']}/{meta['model']}, {meta['epochs_done']} epochs, "
               f"test accuracy {meta['test_accuracy']:.4f} (best {meta['best_test_accuracy']:.4f})")


def inspect(run_dir: Annotated[Path, typer.Argument(help="A run directory written by robench train.")]) -> None:
    """Print a run's facts: data, model, loss, training mode, accuracy, history and provenance."""
    from robench.models.inspection import describe_run

    try:
        typer.echo(describe_run(run_dir))
    except RobenchError as exc:
        fail(exc)


def quickstart(
    out: Annotated[Path, typer.Option(help="Where to put the two runs (ce/ and gccs/).")] = Path("runs/quickstart"),
    epochs: Annotated[int, typer.Option(help="Epochs per run.")] = 30,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Retrain even if finished runs exist in --out.")] = False,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Train small-cnn with ce and gccs on the bundled digits data (about a minute on CPU) and compare."""
    from robench.pipeline.quickstart import run_quickstart

    try:
        typer.echo(run_quickstart(out, epochs=epochs, seed=seed, force=force, device=device, progress=not quiet))
    except RobenchError as exc:
        fail(exc)
