"""The ``robench`` command line (Typer): the app and its commands, in the order ``--help`` lists them.

Each command lives in the module of its group (:mod:`~robench.cli.listing`, :mod:`~robench.cli.train`,
:mod:`~robench.cli.attack`, :mod:`~robench.cli.run`, :mod:`~robench.cli.audit`), parses its options
and makes one library call, imported when the command runs so that ``robench --help`` stays fast.
Bad input raises :class:`RobenchError`, printed as one red line with exit code 2
(:func:`robench.cli.options.fail`).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from robench.cli.attack import attack
from robench.cli.audit import audit
from robench.cli.import_model import import_model
from robench.cli.listing import list_
from robench.cli.options import fail
from robench.cli.run import report, run
from robench.cli.train import inspect, quickstart, train
from robench.errors import RobenchError
from robench.progress import console
from robench.version import __version__

USAGE_ERROR = typer.BadParameter.__mro__[1]
"""Click's ``UsageError``, from whichever click this Typer uses (its own copy since Typer 0.22)."""

app = typer.Typer(
    name="robench",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Train classifiers with robust losses (GCCS and baselines) and benchmark them honestly under attack.\n\n"
    "Start with `robench quickstart`, then `robench train --help` and `robench attack --help`.",
)

def show_version(value: bool) -> None:
    if value:
        typer.echo(f"robench {__version__}")
        raise typer.Exit()


@app.callback()
def options(version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True,
                                                  help="Print robench's version and exit.")] = False) -> None:
    """Train classifiers with robust losses (GCCS and baselines) and benchmark them honestly under attack."""


app.command("list")(list_)
for command in (train, attack, inspect, quickstart, run, report, audit):
    app.command()(command)
app.command("import-model")(import_model)


METAVARS = {"bool": "", "int": "N", "float": "X", "str": "TEXT", "path": "PATH"}
"""How ``--help`` names an option's value, by type (flags take none), instead of Typer's ``<list[Path]>``."""


def natural_metavars(command):
    """``command`` (and its subcommands) with plain metavars: ``--quiet`` not ``--quiet <bool>``, ``--out PATH``."""
    for sub in getattr(command, "commands", {}).values():
        natural_metavars(sub)
    for param in command.params:
        if param.metavar is None and param.param_type_name == "option":
            kind = param.display_type(None).strip("<>").lower()
            kind = kind.removeprefix("list[").removesuffix("]")
            name = METAVARS.get(kind, kind.upper() if "|" not in kind else "{" + kind + "}")
            param.metavar = "" if getattr(param, "is_flag", False) else name  # repeatable options say so in their help
    return command


def main(args: list[str] | None = None) -> None:
    """The console script: the app, with command-line usage errors as one ``error:`` line (exit 2).

    Click reports a bad option value or a missing option in a multi-line box; robench reports every
    bad input as one line, like the errors the commands raise themselves.
    """
    command = natural_metavars(typer.main.get_command(app))
    try:
        code = command.main(args=args, prog_name="robench", standalone_mode=False)
    except USAGE_ERROR as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `robench` alone: the help
            typer.echo(exc.ctx.get_help())
            sys.exit(0)
        path = exc.ctx.command_path.partition(" ")[2] if exc.ctx else ""
        message = " ".join(exc.format_message().replace("Value error, ", "").split())
        fail(RobenchError(f"{message} (see robench {path + ' ' if path else ''}--help)"), exit=True)
    except (typer.Abort, KeyboardInterrupt):
        console.print("[yellow]interrupted[/yellow]")
        code = 130
    sys.exit(code or 0)
