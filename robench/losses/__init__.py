"""Training losses, each registered by name and called as ``loss(z, y) -> scalar``.

The training loop calls ``loss.objective(model, x, y) -> (value, z)`` (see
:mod:`robench.losses.base`), so losses that need input gradients get the model and the
batch. ``LOSSES`` maps names to :class:`LossSpec` (factory, hyper-parameters with their
defaults, default gradient clipping).
"""

from __future__ import annotations

import torch

from robench.errors import RobenchError
from robench.losses.base import LOSSES, LatentLoss, LossSpec
from robench.losses.cross_entropy import CrossEntropyLoss
from robench.losses.gccs import GCCSLoss
from robench.losses.gradient_penalties import CrossLipschitzLoss, InputGradientLoss, JacobianLoss

__all__ = ["LOSSES", "LossSpec", "LatentLoss", "GCCSLoss", "CrossEntropyLoss", "JacobianLoss",
           "InputGradientLoss", "CrossLipschitzLoss", "build_loss", "prediction"]

LOSSES.add(
    "gccs",
    LossSpec(GCCSLoss, grad_clip=5.0),
    "Gaussian class-conditional simplex loss (Ali et al., eq. 2): KL to N(mu*e_i, sigma^2 I) + kurtosis",
)
LOSSES.add("ce", LossSpec(CrossEntropyLoss), "cross-entropy on z as logits (no defense)")
LOSSES.add(
    "jacobian",
    LossSpec(JacobianLoss),
    "CE + reg_weight * mean ||dz/dx||_F (Jakubovitz & Giryes 2018); exact or K random projections",
)
LOSSES.add(
    "input-grad",
    LossSpec(InputGradientLoss),
    "CE + reg_weight * mean ||d CE(x_b, y_b)/dx||^2 (Ross & Doshi-Velez 2018)",
)
LOSSES.add(
    "cross-lipschitz",
    LossSpec(CrossLipschitzLoss),
    "CE + reg_weight * mean over class pairs of ||grad z_l - grad z_m||^2 (Hein & Andriushchenko 2017)",
)


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
