"""A recipe as frozen dataclasses: what to train, attack, audit, snapshot and report.

One TOML file per experiment (``recipes/*.toml``), parsed and validated by
:func:`robench.pipeline.recipe_toml.load_recipe`; see ``recipes/README.md`` for every key.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from robench.evaluation.latent import LatentSpec

MODES = ("regular", "finetune")


@dataclass(frozen=True)
class TrainingSpec:
    datasets: tuple[str, ...]
    models: tuple[str, ...]
    losses: tuple[str, ...]
    modes: tuple[str, ...] = ("regular",)
    seeds: tuple[int, ...] = (0,)
    epochs: int = 10
    finetune_epochs: int = 5
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-3
    train_subset: int | None = None
    test_subset: int | None = None
    dataset_options: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    loss_hyper: dict = field(default_factory=dict)   # loss -> {hyper: value}
    hyper_grid: dict = field(default_factory=dict)   # loss -> {hyper: [values]}: one run per combination


@dataclass(frozen=True)
class AttackStep:
    attack: str
    eps: tuple[float, ...]
    backends: tuple[str, ...] = ("native",)
    eps_mode: str = "relative"
    norm: str | None = None                     # Linf or L2 for the attacks that take one; None: Linf
    steps: int | None = None
    step_size: float | None = None
    restarts: int | None = None                 # None: the attack's default
    attack_loss: str | None = None              # None: the attack's default
    n_samples: int | None = None
    batch_size: int = 128
    seed: int = 0
    sweep: str = "cumulative"
    datasets: tuple[str, ...] | None = None     # None: every dataset of the recipe


@dataclass(frozen=True)
class AuditStep:
    """``robench audit`` for every checkpoint; None fields follow the recipe's first ``pgd`` step."""

    eps: tuple[float, ...] | None = None
    eps_mode: str | None = None
    eps_check: float | None = None
    n_samples: int | None = None
    seed: int | None = None
    batch_size: int = 128
    steps: int = 5
    strong_steps: int = 100
    strong_restarts: int = 5
    apgd_steps: int = 100
    square_queries: int = 5000
    transfer_steps: int = 20
    prune: bool = True                      # expensive attacks on the images still standing only
    losses: tuple[str, ...] | None = None   # audit only these losses' checkpoints (None: all)
    modes: tuple[str, ...] | None = None    # and only these training modes (None: all)


@dataclass(frozen=True)
class ReportStep:
    compare_paper: bool = False


@dataclass(frozen=True)
class Recipe:
    name: str
    path: str
    description: str
    scale: str
    train: TrainingSpec
    attacks: tuple[AttackStep, ...] = ()
    latent: LatentSpec | None = None
    audit: AuditStep | None = None
    report: ReportStep = ReportStep()


def hyper_variants(spec: TrainingSpec, loss: str) -> list[dict]:
    """The loss's hyper-parameter settings: ``loss_hyper`` crossed with every ``hyper_grid`` combination."""
    base = dict(spec.loss_hyper.get(loss, {}))
    grid = spec.hyper_grid.get(loss, {})
    if not grid:
        return [base]
    names = list(grid)
    return [{**base, **dict(zip(names, combo))} for combo in itertools.product(*(grid[n] for n in names))]
