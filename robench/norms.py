"""The threat models attacks work in: L∞ and L2 balls around each image, named as RobustBench names them.

Every function takes per-image radii that broadcast against the images (``per_image(eps, x)``,
shape (B, 1, 1, 1) for images (B, C, H, W)) and keeps results inside [0, 1]:

* :func:`project` — onto the ε-ball around x (L∞: clip each pixel; L2: rescale δ when ‖δ‖₂ > ε),
  then into [0, 1]. For L2 the box clip can only shrink ‖δ‖₂, so the result stays in the ball.
* :func:`steepest_ascent` — the direction of a normalised gradient step: sign(g) for L∞ (Madry et al.
  2018), g / ‖g‖₂ for L2.
* :func:`random_start` — a uniform draw in the L∞ ball, or a uniform direction scaled to a uniform
  radius in the L2 ball, projected.
* :func:`distance` — per-image ‖x_adv − x‖ in the norm, shape (B,).
"""

from __future__ import annotations

import torch

from robench.errors import RobenchError

NORMS = ("Linf", "L2")


def check_norm(name: str, norm: str) -> str:
    """``norm`` if it is one of :data:`NORMS`, else a :class:`RobenchError` naming the attack."""
    if norm not in NORMS:
        raise RobenchError(f"{name}: unknown norm {norm!r}; choose one of: {', '.join(NORMS)}")
    return norm


def flat_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-image L2 norm of ``t`` (B, ...), shaped to broadcast against it."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def distance(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    """‖x_adv − x‖ per image, shape (B,)."""
    delta = (x_adv - x).flatten(1)
    return delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)


def project(x_adv: torch.Tensor, x: torch.Tensor, radius: torch.Tensor, norm: str = "Linf") -> torch.Tensor:
    """``x_adv`` moved into the ``norm`` ball of per-image ``radius`` around x, then clipped to [0, 1]."""
    if norm == "Linf":
        return torch.minimum(torch.maximum(x_adv, x - radius), x + radius).clamp(0.0, 1.0)
    delta = x_adv - x
    scale = torch.clamp(radius / flat_norm(delta).clamp_min(1e-12), max=1.0)
    return (x + delta * scale).clamp(0.0, 1.0)


def steepest_ascent(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The unit-norm direction of steepest ascent for a linear model with gradient ``grad``."""
    if norm == "Linf":
        return grad.sign()
    return grad / flat_norm(grad).clamp_min(1e-12)


def random_start(x: torch.Tensor, radius: torch.Tensor, norm: str, on_sphere: bool = False) -> torch.Tensor:
    """A random point of the ``norm`` ball around x: uniform for L∞; for L2 a uniform direction at a uniform
    radius in [0, ``radius``] (Madry et al.'s PGD, torchattacks' PGDL2), or with ``on_sphere`` at the radius
    itself (AutoAttack's APGD and APGD-T: on a GCCS Fashion-MNIST model, 4 points stronger than starting
    inside, 200 images, 4 seeds)."""
    if norm == "Linf":
        return project(x + (torch.rand_like(x) * 2 - 1) * radius, x, radius, norm)
    direction = torch.randn_like(x)
    direction = direction / flat_norm(direction).clamp_min(1e-12)
    if on_sphere:
        return project(x + direction * radius, x, radius, norm)
    length = torch.rand((len(x),) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
    return project(x + direction * length * radius, x, radius, norm)
