"""``pgd``: projected gradient descent, L∞, untargeted (Madry et al. 2018).

x⁰ = x + U(−ε, ε) (uniform random start, clipped to [0, 1]); then ``steps`` times
xᵏ⁺¹ = Π_{B∞(x, ε) ∩ [0,1]}(xᵏ + α·sign ∇ₓ L(z(xᵏ), y)), with α = ``step_size``·ε per image
(default 2.5/steps, so 2.5·ε/steps as in Madry et al.). L is CE on z (the paper's) or the
Carlini–Wagner margin max_{j≠y} z_j − z_y. ``restarts = R`` keeps, per image, the worst of R
random starts (a misclassifying one if any, else the one with the highest loss).
Shapes: x (B, C, H, W) in [0, 1], y (B,), eps (B,) absolute radii.
"""

from __future__ import annotations

import torch

from robench.attacks.base import ATTACKS, Attack, attack_objective, check_settings, per_image, project


def sign_gradient_ascent(model, x, labels, radius, alpha, steps: int, loss: str, targeted: bool,
                         start: torch.Tensor) -> torch.Tensor:
    """``steps`` projected sign-gradient ascent steps on ``attack_objective`` from ``start``."""
    x_adv = start
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        objective = attack_objective(model(x_adv), labels, loss, targeted).sum()
        (grad,) = torch.autograd.grad(objective, x_adv)
        x_adv = project(x_adv.detach() + alpha * grad.sign(), x, radius)
    return x_adv.detach()


@ATTACKS.register("pgd", "PGD, L-inf, untargeted (Madry et al. 2018): random start, sign steps of 2.5*eps/steps")
class PGD(Attack):
    name = "pgd"
    targeted = False

    def __init__(self, steps: int = 5, step_size: float | None = None, restarts: int = 1, loss: str = "ce",
                 random_start: bool = True):
        check_settings(self.name, steps, step_size, restarts, loss)
        self.steps, self.restarts, self.loss, self.random_start = steps, restarts, loss, random_start
        self.step_size = step_size if step_size is not None else 2.5 / steps

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": self.step_size, "restarts": self.restarts, "attack_loss": self.loss}

    def __call__(self, model, x, y, eps):
        if not bool((eps > 0).any()):
            return x.clone()
        radius = per_image(eps, x)
        alpha = self.step_size * radius
        best, best_score = x.clone(), None
        for _ in range(self.restarts):
            start = x
            if self.random_start:
                start = project(x + (torch.rand_like(x) * 2 - 1) * radius, x, radius)
            x_adv = sign_gradient_ascent(model, x, y, radius, alpha, self.steps, self.loss, False, start)
            if self.restarts == 1:
                return x_adv
            with torch.no_grad():
                z = model(x_adv)
                # misclassified first, then by loss: a score that orders (fooled, objective)
                score = attack_objective(z, y, self.loss, False) + 1e9 * (z.argmax(1) != y)
            if best_score is None:
                best, best_score = x_adv, score
            else:
                better = score > best_score
                best = torch.where(per_image(better, x).bool(), x_adv, best)
                best_score = torch.maximum(score, best_score)
        return best
