"""``TrainConfig``: everything that determines a training run, validated before any work.

The resolved config is recorded in run.json as ``config``; :func:`finished_metadata` says
whether a run directory already holds a finished run of exactly this config (so recipes and
``robench quickstart`` reuse it instead of retraining).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from robench.data import DATASETS
from robench.errors import RobenchError
from robench.losses import LOSSES
from robench.models import MODELS
from robench.models.checkpoints import METADATA, read_metadata


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
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number, got {self.lr}"),
            (self.momentum >= 0, f"--momentum must be >= 0, got {self.momentum}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (self.grad_clip is None or self.grad_clip >= 0, f"--grad-clip must be >= 0, got {self.grad_clip}"),
        ]
        for ok, message in checks:
            if not ok:
                raise RobenchError(message)
        DATASETS.get(self.dataset)
        MODELS.get(self.model)
        LOSSES.get(self.loss)

    def resolved_grad_clip(self) -> float | None:
        clip = LOSSES.get(self.loss).grad_clip if self.grad_clip is None else self.grad_clip
        return clip or None


def finished_metadata(config: TrainConfig) -> dict | None:
    """run.json of a finished run of exactly ``config`` in ``config.out``, else None."""
    if not (Path(config.out) / METADATA).exists():
        return None
    meta = read_metadata(config.out)
    if meta.get("status") == "finished" and meta.get("config") == dataclasses.asdict(config):
        return meta
    return None
