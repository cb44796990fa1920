"""``robench import-model``: your own PyTorch model and weights as a robench run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from robench.cli.options import (DataDirOpt, DatasetOptionOpt, FactoryArgOpt, QuietOpt, fail, parse_options)
from robench.errors import RobenchError


def import_model(
    model_factory: Annotated[str, typer.Option(
        "--model-factory", help="MODULE:FUNCTION or path/to/file.py:FUNCTION returning an nn.Module that maps images "
                                "in [0, 1] of the dataset's shape to logits.")],
    weights: Annotated[Path, typer.Option(
        help="The weights: .safetensors, or a .pt/.pth state dict (read with weights_only=True; never a pickle).")],
    dataset: Annotated[str, typer.Option(help="The dataset the model classifies (robench list datasets).")],
    out: Annotated[Path, typer.Option(help="The run directory to write (model.safetensors + run.json).")],
    dataset_option: DatasetOptionOpt = None,
    factory_arg: FactoryArgOpt = None,
    data_dir: Annotated[Path | None, typer.Option(help=DataDirOpt)] = None,
    download: Annotated[bool, typer.Option("--download", help="Download the dataset if it is missing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace another model already in --out.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Import your own model: check that the weights fit the module and its outputs the dataset's classes, measure
    its clean test accuracy, and write a run directory that attack, audit and report treat like a trained one.

    run.json records origin = imported, the factory and its arguments, the weights' source and hashes, and the
    model's identity (the hash of its weights together with the factory). Loading it later runs the factory's
    code, so robench attack/audit ask for --trust-code.
    """
    from robench.models.user_models import import_model as run_import

    try:
        meta = run_import(model_factory, weights, dataset, out, factory_args=parse_options(factory_arg, "--factory-arg"),
                          dataset_options=parse_options(dataset_option, "--dataset-option"),
                          data_dir=str(data_dir) if data_dir else None, download=download, force=force)
    except RobenchError as exc:
        fail(exc)
    typer.echo(f"{out}: {model_factory} with {weights} on {dataset}, identity {meta['model_sha256'][:16]}..., "
               f"test accuracy {meta['test_accuracy']:.4f}")
