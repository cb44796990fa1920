"""What every training loss is: a module ``loss(z, y)`` plus ``objective(model, x, y)``, registered by name.

The training loop calls ``loss.objective(model, x, y) -> (value, z)``. Losses on the
latent vector alone (``gccs``, ``ce``) inherit :class:`LatentLoss`, whose objective is
``loss(model(x), y)``. Losses that penalise input gradients (``jacobian``, ``input-grad``,
``cross-lipschitz``) override ``objective`` to differentiate the model with respect to x
(double back-propagation), so the loop never special-cases loss names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from robench.errors import RobenchError
from robench.registry import Registry


class LatentLoss(nn.Module):
    """A loss of z (batch, D) and integer labels y (batch,) returning a scalar.

    ``whole_batch``: False for a mean over the rows of per-row terms (each process of a
    multi-process run may average its own rows); True when the value couples the rows
    (batch statistics, as in GCCS): then a multi-process run gathers z and y of the whole
    batch and calls ``loss(z, y)`` on them (:mod:`robench.training.distributed`), so such a loss
    must keep the default :meth:`objective`.
    """

    whole_batch: bool = False

    def objective(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training objective on a batch: ``(loss value to back-propagate, z)``."""
        z = model(x)
        return self(z, y), z


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: how to build it and how to train with it.

    ``hyper`` lists the constructor's keyword hyper-parameters with their defaults (read
    from its signature, so the defaults live in one place). ``grad_clip`` is the loss's default maximum global gradient norm for training
    (``None`` = no clipping); see "Training GCCS at the paper's learning rate" in
    :class:`robench.losses.GCCSLoss`.
    """

    factory: type[nn.Module]
    grad_clip: float | None = None

    @property
    def hyper(self) -> dict[str, float | int | str]:
        parameters = inspect.signature(self.factory.__init__).parameters.values()
        return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


LOSSES: Registry[LossSpec] = Registry("loss")


def register_loss(name: str, description: str, *, grad_clip: float | None = None) -> Callable[[type], type]:
    """Class decorator: register a loss class in :data:`LOSSES` under ``name`` (with its default clipping)."""

    def decorator(cls: type) -> type:
        LOSSES.add(name, LossSpec(cls, grad_clip=grad_clip), description)
        return cls

    return decorator


def build_loss(name: str, num_classes: int, hyper: dict | None = None) -> LatentLoss:
    """Build loss ``name`` for D = ``num_classes`` with hyper-parameters over its defaults.

    An unknown hyper-parameter name is a :class:`RobenchError` naming the known ones.
    """
    spec = LOSSES.get(name)
    hyper = dict(hyper or {})
    unknown = sorted(set(hyper) - set(spec.hyper))
    if unknown:
        known = ", ".join(spec.hyper) or "none"
        raise RobenchError(f"loss {name!r} has no hyper-parameter {unknown[0]!r}; it takes: {known}")
    return spec.factory(num_classes, **{**spec.hyper, **hyper})


def prediction(z: torch.Tensor) -> torch.Tensor:
    """Decision rule, eq. (3): argmax_i z_i — for GCCS also the nearest simplex vertex μ·e_i."""
    return z.argmax(dim=1)
