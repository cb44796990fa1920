"""``TrainConfig``: everything that determines a training run, validated before any work.

The resolved config is recorded in run.json as ``config``; :func:`finished_metadata` says
whether a run directory already holds a finished run of exactly this config (so recipes and
``robench quickstart`` reuse it instead of retraining). :func:`hyper_problem` is the rule for a
loss hyper-parameter's value that recipes apply too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from robench.checks import INT_MAX, check_count, check_seed, is_number
from robench.data import DATASETS
from robench.errors import RobenchError
from robench.losses import LOSSES, AdversarialLoss, default_eps
from robench.models import MODELS
from robench.models.checkpoints import read_metadata
from robench.models.run_layout import METADATA


def hyper_problem(loss: str, name: str, value: object) -> str | None:
    """Why ``value`` cannot be hyper-parameter ``name`` of ``loss`` (one of its own), or None when it can.

    The value must have the type of the loss's default (``LOSSES.get(loss).hyper``): a finite
    number where the default is a float (an int will do), an integer where it is an int, a string
    where it is a string; a bool is never a number.
    """
    default = LOSSES.get(loss).hyper[name]
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, float):
        ok, want = is_number(value), "a finite number"
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and -INT_MAX - 1 <= value <= INT_MAX
        want = "an integer in -2^63..2^63-1"
    elif isinstance(default, str):
        ok, want = isinstance(value, str), "a string"
    else:
        return None
    return None if ok else f"expected {want}, got {value!r}"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (recorded in run.json as ``config``)."""

    dataset: str
    model: str
    loss: str
    out: str
    epochs: int
    dataset_options: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    loss_hyper: dict = field(default_factory=dict)
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-3
    grad_clip: float | None = None  # None: the loss's default; 0: no clipping
    samples_per_class: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    seed: int = 0
    init: str | None = None

    def validate(self) -> None:
        """Check every setting before any work; raises :class:`RobenchError` naming the first bad one."""
        check_count(self.epochs, "--epochs")
        check_count(self.batch_size, "--batch-size")
        if self.samples_per_class is not None:
            check_count(self.samples_per_class, "--samples-per-class", 2,
                        " (GCCS needs two rows of a class in a batch)")
        for flag, value in (("--train-subset", self.train_subset), ("--test-subset", self.test_subset)):
            if value is not None:
                check_count(value, flag)
        check_seed(self.seed)
        numbers = [("--lr", self.lr, "a positive number", lambda v: v > 0),
                   ("--momentum", self.momentum, "a finite number >= 0", lambda v: v >= 0),
                   ("--weight-decay", self.weight_decay, "a finite number >= 0", lambda v: v >= 0)]
        if self.grad_clip is not None:
            numbers.append(("--grad-clip", self.grad_clip, "a finite number >= 0 (0: no clipping)", lambda v: v >= 0))
        for flag, value, rule, ok in numbers:
            if not (is_number(value) and ok(value)):
                raise RobenchError(f"{flag} must be {rule}, got {value!r}")
        for flag, value in (("--dataset-option", self.dataset_options), ("--model-option", self.model_options),
                            ("loss_hyper", self.loss_hyper)):
            if not isinstance(value, dict):
                raise RobenchError(f"{flag}: expected a mapping of names to values, got {value!r}")
        if not self.out:
            raise RobenchError("--out must name a run directory, got ''")
        DATASETS.get(self.dataset)
        MODELS.get(self.model)
        LOSSES.get(self.loss)
        known = LOSSES.get(self.loss).hyper
        for name, value in self.loss_hyper.items():
            if name not in known:
                raise RobenchError(f"loss {self.loss!r} has no hyper-parameter {name!r}; it takes: "
                                   f"{', '.join(known) or 'none'}")
            problem = hyper_problem(self.loss, name, value)
            if problem is not None:
                raise RobenchError(f"loss {self.loss!r}, hyper-parameter {name}: {problem}")
        self.resolved_loss_hyper()  # a dataset without a default eps is an error before any work

    def resolved_loss_hyper(self) -> dict:
        """``loss_hyper`` as the loss is built: an adversarial-training loss given no ``eps`` gets its dataset's
        default (:func:`robench.losses.default_eps`); run.json records the result as ``loss_hyper``."""
        hyper = dict(self.loss_hyper)
        if issubclass(LOSSES.get(self.loss).factory, AdversarialLoss) and "eps" not in hyper:
            hyper["eps"] = default_eps(self.dataset)
        return hyper

    def resolved_grad_clip(self) -> float | None:
        """The gradient-norm clip in effect: the loss's default when ``grad_clip`` is None; None for no clipping."""
        clip = LOSSES.get(self.loss).grad_clip if self.grad_clip is None else self.grad_clip
        return clip or None


def config_diffs(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every key of the config ``new`` whose value differs in ``old``.

    ``out`` is left out: the run being compared is the one found in ``out``, wherever it was first
    written (``runs/a``, ``./runs/a``, or a directory since moved or copied).
    """
    return [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in new if k != "out" and old.get(k) != new[k]]


def finished_metadata(config: TrainConfig) -> dict | None:
    """run.json of a finished run of exactly ``config`` in ``config.out``, else None."""
    if not (Path(config.out) / METADATA).is_file():
        return None
    meta = read_metadata(config.out)
    if meta.get("status") == "finished" and not config_diffs(meta.get("config") or {}, dataclasses.asdict(config)):
        return meta
    return None
