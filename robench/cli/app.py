"""The ``robench`` command line (Typer): the app and its commands, in the order ``--help`` lists them.

Each command lives in the module of its group (:mod:`~robench.cli.listing`, :mod:`~robench.cli.train`,
:mod:`~robench.cli.attack`, :mod:`~robench.cli.run`, :mod:`~robench.cli.audit`), parses its options
and makes one library call, imported when the command runs so that ``robench --help`` stays fast.
Bad input raises :class:`RobenchError`, printed as one red line with exit code 2
(:func:`robench.cli.options.fail`).
"""

from __future__ import annotations

import typer

from robench.cli.attack import attack
from robench.cli.audit import audit
from robench.cli.listing import list_
from robench.cli.run import report, run
from robench.cli.train import inspect, quickstart, train

app = typer.Typer(
    name="robench",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Train classifiers with robust losses (GCCS and baselines) and benchmark them honestly under attack.\n\n"
    "Start with `robench quickstart`, then `robench train --help` and `robench attack --help`.",
)

app.command("list")(list_)
for command in (train, attack, inspect, quickstart, run, report, audit):
    app.command()(command)


def main() -> None:
    app()
