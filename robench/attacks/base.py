"""The attack contract: ``attack(model, x, y, eps) -> x_adv``.

* ``x``: images (B, C, H, W) in [0, 1]; ``y``: true labels (B,); ``eps``: a per-image tensor
  (B,) of absolute L∞ radii (the CLI turns the paper's relative ε, ‖n‖∞ ≤ ε·‖x‖∞, into it).
* ``x_adv`` stays in [0, 1] and inside each image's ε-ball; ε = 0 returns x unchanged.
* Targeting is fixed at construction: targeted attacks aim at t = (y + 1) mod D, the
  paper's rule ("the targeted output class is y_{l+1} when the true class is y_l").
* Batched over images, device-agnostic, the model in eval mode; gradients are taken with
  respect to the input only (parameters' ``.grad`` is never computed).
* ``settings()`` gives the columns every result row records: steps, step_size (relative to ε),
  restarts, attack_loss, norm (``Linf`` unless the attack takes another), source (the checkpoint a
  transfer attack crafts on, else None) and
  source_sha256 (the SHA-256 of that checkpoint's weights, so its rows go stale when it changes).
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from robench.checks import check_count
from robench.errors import RobenchError

ATTACK_LOSSES = ("ce", "margin", "dlr")
SETTING_DEFAULTS = {"steps": None, "step_size": None, "restarts": 1, "attack_loss": None, "norm": "Linf",
                    "source": None, "source_sha256": None}


class Attack(ABC):
    """An L∞ attack with its settings fixed at construction.

    A subclass's ``settings()`` is completed with ``SETTING_DEFAULTS`` for the keys it leaves out,
    so every attack reports every row column (``source`` is None except for ``transfer``).
    """

    name: str = ""
    targeted: bool = False
    backend: str = "native"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("settings")
        if own is not None:
            @functools.wraps(own)
            def settings(self) -> dict:
                return {**SETTING_DEFAULTS, **own(self)}

            cls.settings = settings

    @abstractmethod
    def __call__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Adversarial images for (x, y) within per-image radii ``eps`` (B,)."""

    def settings(self) -> dict:
        """The parameters recorded in every result row: the keys of ``SETTING_DEFAULTS``."""
        return dict(SETTING_DEFAULTS)


def target_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The paper's target rule for targeted attacks: t = (y + 1) mod D."""
    return (y + 1) % num_classes


def num_classes_of(model: torch.nn.Module, x: torch.Tensor) -> int:
    """D: the model's declared ``num_classes``, else the width of its output on one image."""
    declared = getattr(model, "num_classes", None)
    if declared:
        return int(declared)
    with torch.no_grad():
        return model(x[:1]).shape[1]


def per_image(eps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape (B,) radii to broadcast against images (B, C, H, W)."""
    return eps.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.dim() - 1)))


def project(x_adv: torch.Tensor, x: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Clip into the L∞ ball of per-image ``radius`` (broadcastable) around x, then into [0, 1]."""
    return torch.minimum(torch.maximum(x_adv, x - radius), x + radius).clamp_(0.0, 1.0)


def attack_objective(z: torch.Tensor, labels: torch.Tensor, loss: str, targeted: bool,
                     true_labels: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image objective (B,) the attack *maximises*, from logits z (B, D).

    Untargeted (labels = true y):

    * ``ce``: CE(z, y);
    * ``margin``: max_{j≠y} z_j − z_y (Carlini & Wagner 2017);
    * ``dlr``: −(z_y − max_{j≠y} z_j) / (z_π1 − z_π3 + 1e-12), π sorting z in decreasing order
      (Croce & Hein 2020, the "difference of logits ratio" of APGD-DLR); needs D ≥ 3.

    Targeted (labels = targets t; ``dlr`` also needs the true labels y as ``true_labels``):

    * ``ce``: −CE(z, t);
    * ``margin``: z_t − max_{j≠t} z_j;
    * ``dlr``: −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12) (Croce & Hein 2020, the targeted DLR
      of APGD-T); needs D ≥ 4.

    DLR is invariant to shifting and (positively) scaling the logits, so it is not fooled by
    a model that only makes its logits large.
    """
    if loss == "ce":
        ce = F.cross_entropy(z, labels, reduction="none")
        return -ce if targeted else ce
    if loss == "margin":
        own, others = _own_and_best_other(z, labels)
        return own - others if targeted else others - own
    if loss == "dlr":
        return _dlr(z, labels, targeted, true_labels)
    raise RobenchError(f"unknown attack loss {loss!r}; choose one of: {', '.join(ATTACK_LOSSES)}")


def _own_and_best_other(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_label, max_{j≠label} z_j), each (B,)."""
    own = z.gather(1, labels[:, None])[:, 0]
    return own, z.masked_fill(F.one_hot(labels, z.shape[1]).bool(), float("-inf")).amax(1)


def check_dlr_classes(num_classes: int, targeted: bool) -> None:
    """DLR's denominator uses the 3rd (untargeted) or 4th (targeted) largest logit."""
    need = 4 if targeted else 3
    if num_classes < need:
        kind = "targeted" if targeted else "untargeted"
        raise RobenchError(f"attack loss dlr needs at least {need} classes for a {kind} attack; "
                           f"the model has {num_classes}: use --attack-loss ce or margin")


def _dlr(z: torch.Tensor, labels: torch.Tensor, targeted: bool, true_labels: torch.Tensor | None) -> torch.Tensor:
    check_dlr_classes(z.shape[1], targeted)
    top = z.topk(4 if targeted else 3, dim=1).values  # z_π1 ≥ z_π2 ≥ z_π3 (≥ z_π4)
    if not targeted:
        own, others = _own_and_best_other(z, labels)
        return -(own - others) / (top[:, 0] - top[:, 2] + 1e-12)
    if true_labels is None:
        raise ValueError("the targeted DLR needs the true labels: pass true_labels=y")
    own = z.gather(1, true_labels[:, None])[:, 0]
    target = z.gather(1, labels[:, None])[:, 0]
    return -(own - target) / (top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + 1e-12)


def check_settings(name: str, steps: int, step_size: float | None, restarts: int, loss: str) -> None:
    """Refuse settings no attack can run: ``steps`` and ``restarts`` integers in 1..2^63-1, ``step_size``
    (a fraction of ε) a finite number > 0 or None (the attack's default), ``loss`` one of :data:`ATTACK_LOSSES`."""
    for flag, value in (("--steps", steps), ("--restarts", restarts)):
        check_count(value, f"{name}: {flag}")
    if step_size is not None and (isinstance(step_size, bool) or not isinstance(step_size, (int, float))
                                  or not 0 < step_size < math.inf):
        raise RobenchError(f"{name}: --step-size must be a finite number > 0 (a fraction of eps), got {step_size!r}")
    if loss not in ATTACK_LOSSES:
        raise RobenchError(f"unknown attack loss {loss!r}; choose one of: {', '.join(ATTACK_LOSSES)}")
