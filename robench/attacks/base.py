"""The attack contract: ``attack(model, x, y, eps) -> x_adv``.

* ``x``: images (B, C, H, W) in [0, 1]; ``y``: true labels (B,); ``eps``: a per-image tensor
  (B,) of absolute L∞ radii (the CLI turns the paper's relative ε, ‖n‖∞ ≤ ε·‖x‖∞, into it).
* ``x_adv`` stays in [0, 1] and inside each image's ε-ball; ε = 0 returns x unchanged.
* Targeting is fixed at construction: targeted attacks aim at t = (y + 1) mod D, the
  paper's rule ("the targeted output class is y_{l+1} when the true class is y_l").
* Batched over images, device-agnostic, the model in eval mode; gradients are taken with
  respect to the input only (parameters' ``.grad`` is never computed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from robench.errors import RobenchError
from robench.registry import Registry

ATTACK_LOSSES = ("ce", "margin")


class Attack(ABC):
    """An L∞ attack with its settings fixed at construction."""

    name: str = ""
    targeted: bool = False
    backend: str = "native"

    @abstractmethod
    def __call__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Adversarial images for (x, y) within per-image radii ``eps`` (B,)."""

    def settings(self) -> dict:
        """The parameters recorded in every result row (steps, step_size, restarts, attack_loss)."""
        return {}


ATTACKS: Registry[type[Attack]] = Registry("attack")


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


def attack_objective(z: torch.Tensor, labels: torch.Tensor, loss: str, targeted: bool) -> torch.Tensor:
    """Per-image objective the attack *maximises*.

    Untargeted (labels = true y): ``ce`` = CE(z, y); ``margin`` = max_{j≠y} z_j − z_y
    (Carlini & Wagner 2017). Targeted (labels = targets t): ``ce`` = −CE(z, t); ``margin`` =
    z_t − max_{j≠t} z_j.
    """
    if loss == "ce":
        ce = F.cross_entropy(z, labels, reduction="none")
        return -ce if targeted else ce
    if loss == "margin":
        own = z.gather(1, labels[:, None])[:, 0]
        others = z.masked_fill(F.one_hot(labels, z.shape[1]).bool(), float("-inf")).amax(1)
        return own - others if targeted else others - own
    raise RobenchError(f"unknown attack loss {loss!r}; choose one of: {', '.join(ATTACK_LOSSES)}")


def check_settings(name: str, steps: int, step_size: float | None, restarts: int, loss: str) -> None:
    if steps < 1:
        raise RobenchError(f"{name}: --steps must be at least 1, got {steps}")
    if step_size is not None and not step_size > 0:
        raise RobenchError(f"{name}: --step-size must be positive, got {step_size}")
    if restarts < 1:
        raise RobenchError(f"{name}: --restarts must be at least 1, got {restarts}")
    if loss not in ATTACK_LOSSES:
        raise RobenchError(f"unknown attack loss {loss!r}; choose one of: {', '.join(ATTACK_LOSSES)}")
