"""Training losses, each registered by name beside its class and called as ``loss(z, y) -> scalar``.

The training loop calls ``loss.objective(model, x, y) -> (value, z)`` (see
:mod:`robench.losses.base`), so losses that need input gradients get the model and the
batch, and the adversarial-training losses (``pgd-at``, ``trades``) craft their examples
there. ``LOSSES`` maps names to :class:`LossSpec` (factory, hyper-parameters with their
defaults, default gradient clipping); :func:`build_loss` builds one by name.
"""

from robench.losses.adversarial import (DEFAULT_EPS, AdversarialLoss, PGDATLoss, TRADESLoss, default_eps)
from robench.losses.base import LOSSES, LatentLoss, LossSpec, build_loss, prediction
from robench.losses.cross_entropy import CrossEntropyLoss
from robench.losses.gccs import GCCSLoss
from robench.losses.gradient_penalties import (CrossLipschitzLoss, InputGradientLoss, JacobianLoss)

__all__ = ["DEFAULT_EPS", "LOSSES", "AdversarialLoss", "CrossEntropyLoss", "CrossLipschitzLoss", "GCCSLoss",
           "InputGradientLoss", "JacobianLoss", "LatentLoss", "LossSpec", "PGDATLoss", "TRADESLoss", "build_loss",
           "default_eps", "prediction"]
