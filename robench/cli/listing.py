"""``robench list``: the registered datasets, models, losses or attacks with one-line descriptions."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer


class Kind(str, Enum):
    datasets = "datasets"
    models = "models"
    losses = "losses"
    attacks = "attacks"


def list_(kind: Annotated[Kind, typer.Argument(help="What to list: datasets, models, losses or attacks.")]) -> None:
    """List registered datasets, models, losses or attacks with one-line descriptions."""
    from robench.attacks import ATTACKS, attack_backends
    from robench.data import DATASETS
    from robench.losses import LOSSES
    from robench.models import MODELS

    registry = {"datasets": DATASETS, "models": MODELS, "losses": LOSSES, "attacks": ATTACKS}[kind.value]
    entries = registry.entries()
    backends = {e.name: "/".join(attack_backends(e.name)) if kind is Kind.attacks else "" for e in entries}
    width, column = max(len(e.name) for e in entries), max(len(b) for b in backends.values())
    for entry in entries:
        middle = f"{backends[entry.name]:<{column}}  " if column else ""
        typer.echo(f"{entry.name:<{width}}  {middle}{entry.description}")
