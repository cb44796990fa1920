"""Rough costs of a plan's jobs, so that ``robench run``'s progress bar and ETA weigh a job by its work.

The unit is one forward and backward pass of the model over 1,000 images; the numbers are estimates
from this project's benchmarks (README, "Benchmarks"), meant for the ETA only, never recorded as results.
"""

from __future__ import annotations

from robench.pipeline.plan import Pending, Plan, PlannedAudit, PlannedRun, PlannedSweep

LOSS_FACTOR = {"jacobian": 10.0, "cross-lipschitz": 10.0, "input-grad": 2.2, "pgd-at": 8.0, "trades": 11.0}
"""A training step of the loss as a multiple of a cross-entropy step (bench_train_step.py; adversarial training:
its crafting steps plus one)."""
TRAIN_IMAGES = {"mnist": 60_000, "fashion-mnist": 60_000, "svhn": 73_257, "cifar10": 50_000, "cifar100": 50_000,
                "digits": 1_437}
ATTACK_PASSES = {"jsma": 60.0, "square": 400.0, "autoattack": 500.0}
"""Passes per row of attacks whose cost is not their step count (JSMA stops early; Square and AutoAttack
mostly run on the few images still standing)."""
LATENT_COST = 2.0
REPORT_COST = 5.0
AUDIT_PASSES = 900.0  # the pruned battery per 1,000 images, small-cnn


def run_cost(run: PlannedRun) -> float:
    config = run.config
    images = config.train_subset or TRAIN_IMAGES.get(config.dataset, 10_000)
    return config.epochs * images / 1000 * 2 * LOSS_FACTOR.get(config.loss, 1.0)


def sweep_cost(sweep: PlannedSweep) -> float:
    spec = sweep.spec
    images = (spec.n_samples or 10_000) / 1000
    passes = ATTACK_PASSES.get(sweep.step.attack, float(spec.steps or 5) * (spec.restarts or 1) + 1)
    return max(sweep.missing_rows(), 1) * images * passes


def audit_cost(audit: PlannedAudit) -> float:
    return (audit.config.n_samples or 10_000) / 1000 * AUDIT_PASSES


def total_cost(plan: Plan, todo: Pending) -> float:
    """The cost of everything ``todo`` holds, the report included."""
    return (sum(run_cost(r) for r in todo.runs) + sum(sweep_cost(s) for s in todo.sweeps)
            + sum(audit_cost(a) for a in todo.audits) + LATENT_COST * len(todo.latent) + REPORT_COST)
