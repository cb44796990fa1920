"""``pgd``: projected gradient descent, L∞ or L2, untargeted (Madry et al. 2018).

x⁰ = x + U(−ε, ε) (uniform random start, clipped to [0, 1]); then ``steps`` times
xᵏ⁺¹ = Π_{B∞(x, ε) ∩ [0,1]}(xᵏ + α·sign ∇ₓ L(z(xᵏ), y)), with α = ``step_size``·ε per image
(default 2.5/steps, so 2.5·ε/steps as in Madry et al.). ``norm = "L2"``: the random start is a uniform
direction at a uniform radius in the L2 ball, each step is α·∇/‖∇‖₂ (the same default α = 2.5·ε/steps,
as in Madry et al.'s L2 experiments) and the projection rescales δ onto the L2 ball.
L is CE on z (the paper's), the Carlini–Wagner margin max_{j≠y} z_j − z_y, or Croce & Hein's (2020)
DLR (``attack_objective``).
``restarts = R``: after each run only the images still classified correctly are attacked again
from a new random start (AutoAttack's rule); an image keeps its first misclassifying example,
else the example with the highest loss. The first run is the R = 1 attack, so R > 1 never
leaves more images correct than R = 1 with the same seed.
Shapes: x (B, C, H, W) in [0, 1], y (B,), eps (B,) absolute radii.
"""

from __future__ import annotations

import torch

from robench.attacks.base import Attack, attack_objective, check_settings, per_image
from robench.attacks.registry import ATTACKS
from robench.norms import check_norm, project, random_start, steepest_ascent


def sign_gradient_ascent(model, x, labels, radius, alpha, steps: int, loss: str, targeted: bool,
                         start: torch.Tensor, true_labels: torch.Tensor | None = None,
                         norm: str = "Linf") -> torch.Tensor:
    """``steps`` projected steepest-ascent steps on ``attack_objective`` from ``start``: sign steps for L∞,
    normalised-gradient steps for L2 (``norms.steepest_ascent``), each projected onto the ball and [0, 1].

    ``labels`` are the true labels (untargeted) or the targets (targeted); ``true_labels`` are
    the true labels a targeted DLR needs. ``radius`` and ``alpha`` broadcast against x.
    """
    x_adv = start
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        objective = attack_objective(model(x_adv), labels, loss, targeted, true_labels).sum()
        (grad,) = torch.autograd.grad(objective, x_adv)
        x_adv = project(x_adv.detach() + alpha * steepest_ascent(grad, norm), x, radius, norm)
    return x_adv.detach()


@ATTACKS.register("pgd", "native", "PGD, L-inf or L2, untargeted (Madry et al. 2018): random start, steps of "
                                   "2.5*eps/steps")
class PGD(Attack):
    name = "pgd"
    targeted = False

    def __init__(self, steps: int = 5, step_size: float | None = None, restarts: int = 1, loss: str = "ce",
                 random_start: bool = True, norm: str = "Linf"):
        check_settings(self.name, steps, step_size, restarts, loss)
        self.steps, self.restarts, self.loss, self.random_start = steps, restarts, loss, random_start
        self.step_size = step_size if step_size is not None else 2.5 / steps
        self.norm = check_norm(self.name, norm)

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": self.step_size, "restarts": self.restarts, "attack_loss": self.loss,
                "norm": self.norm}

    def _run(self, model, x, y, radius) -> torch.Tensor:
        start = random_start(x, radius, self.norm) if self.random_start else x
        return sign_gradient_ascent(model, x, y, radius, self.step_size * radius, self.steps, self.loss, False, start,
                                    norm=self.norm)

    def __call__(self, model, x, y, eps):
        if not bool((eps > 0).any()):
            return x.clone()
        radius = per_image(eps, x)
        best = self._run(model, x, y, radius)
        if self.restarts == 1:
            return best
        with torch.no_grad():
            z = model(best)
        best_score = attack_objective(z, y, self.loss, False)
        robust = (z.argmax(1) == y) & (eps.to(x.device) > 0)
        for _ in range(self.restarts - 1):
            idx = robust.nonzero().flatten()
            if len(idx) == 0:
                break
            x_adv = self._run(model, x[idx], y[idx], radius[idx])
            with torch.no_grad():
                z = model(x_adv)
            score = attack_objective(z, y[idx], self.loss, False)
            fooled = z.argmax(1) != y[idx]
            better = fooled | (score > best_score[idx])
            best[idx[better]] = x_adv[better]
            best_score[idx[better]] = score[better]
            robust[idx[fooled]] = False
        return best
