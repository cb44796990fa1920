"""Shared pieces of every command: the ``--device`` and ``--quiet`` options, the one-line failure,
and parsers for repeatable ``key=value`` and comma-separated options.

Like weasel's ``cli/main.py``: command modules import from here, never from each other.
"""

from __future__ import annotations

import json
import sys
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
