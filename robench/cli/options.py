"""Shared pieces of every command: the ``--device`` and ``--quiet`` options, the one-line failure,
and parsers for repeatable ``key=value`` and comma-separated options.

Like weasel's ``cli/main.py``: command modules import from here, never from each other.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.markup import escape

from robench.errors import RobenchError
from robench.progress import console

DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA if available, else CPU), cpu or cuda.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or per-epoch lines.")]
DataDirOpt = "Dataset directory (default: $ROBENCH_DATA or ~/.cache/robench/data)."


def fail(exc: RobenchError, exit: bool = False) -> NoReturn:
    """Print ``exc`` as one red ``error:`` line and exit with code 2 (``typer.Exit``, or ``sys.exit`` outside a command)."""
    console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)  # '.[ray]' is no markup
    if exit:
        sys.exit(2)
    raise typer.Exit(code=2)


def parse_options(pairs: list[str] | None, flag: str) -> dict:
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


def split_values(values: list[str] | None) -> list[str]:
    """Repeatable options that also accept comma-separated lists: ["pgd,tgsm", "jsma"] -> [...]."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


FactoryOpt = Annotated[str | None, typer.Option(
    "--model-factory", rich_help_panel="Your model",
    help="Evaluate your own model: MODULE:FUNCTION or path/to/file.py:FUNCTION returning an nn.Module that maps "
         "images in [0, 1] of the dataset's shape to logits (with --weights and --dataset).")]
WeightsOpt = Annotated[Path | None, typer.Option(
    "--weights", rich_help_panel="Your model",
    help="The model's weights: .safetensors, or a .pt/.pth state dict (read with weights_only=True; never a pickle).")]
DatasetOpt = Annotated[str | None, typer.Option(
    "--dataset", rich_help_panel="Your model", help="The dataset your model classifies (robench list datasets).")]
DatasetOptionOpt = Annotated[list[str] | None, typer.Option(
    "--dataset-option", rich_help_panel="Your model", help="Dataset option key=value (repeatable).")]
FactoryArgOpt = Annotated[list[str] | None, typer.Option(
    "--factory-arg", rich_help_panel="Your model", help="Keyword argument key=value of the factory (repeatable).")]
TrustCodeOpt = Annotated[bool, typer.Option(
    "--trust-code", help="Load run directories imported from user code (import-model) by running that code.")]


def user_model_options_given(factory, weights, dataset) -> bool:
    """Whether the command evaluates the user's model; refuses a partial set of --model-factory/--weights/--dataset."""
    given = {"--model-factory": factory, "--weights": weights, "--dataset": dataset}
    if not any(v is not None for v in given.values()):
        return False
    missing = [flag for flag, value in given.items() if value is None]
    if missing:
        raise RobenchError(f"your own model needs --model-factory, --weights and --dataset; missing {', '.join(missing)}")
    return True


def import_user_model(factory: str, weights: Path, dataset: str, dataset_option, factory_arg, run: Path,
                      data_dir: Path | None, download: bool) -> Path:
    """Import the user's model (the code this command line names) into the run directory ``run``; returns it."""
    from robench.models.user_models import import_model

    import_model(factory, weights, dataset, run, factory_args=parse_options(factory_arg, "--factory-arg"),
                 dataset_options=parse_options(dataset_option, "--dataset-option"),
                 data_dir=str(data_dir) if data_dir else None, download=download, force=True)
    return run
