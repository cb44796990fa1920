"""``apgd``: Auto-PGD, L∞ or L2, untargeted (Croce & Hein 2020, ICML, Algorithm 1 and Sec. 3).

Gradient ascent on L (CE, Croce & Hein's DLR or the Carlini–Wagner margin, ``attack_objective``)
from a random start x⁰ in the ε-ball (L2: on its sphere, as AutoAttack), with momentum and a
per-image step size η that needs no tuning:

* x¹ = P(x⁰ + η·s(∇L(x⁰))); then for k ≥ 1: zᵏ⁺¹ = P(xᵏ + η·s(∇L(xᵏ))) and
  xᵏ⁺¹ = P(xᵏ + α(zᵏ⁺¹ − xᵏ) + (1 − α)(xᵏ − xᵏ⁻¹)), α = 0.75. P projects onto the ε-ball ∩
  [0, 1]; s(g) = sign(g) for L∞, g/‖g‖₂ for L2 (``norms.steepest_ascent``).
* η starts at ``step_size``·ε (default 2, the paper's η⁽⁰⁾ = 2ε). At the checkpoints
  w_j = ⌈p_j·N⌉ (p₀ = 0, p₁ = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06); :func:`checkpoints`)
  an image's η is halved and its iterate moved back to its best point x_max when (1) fewer than
  ρ·(w_j − w_{j−1}) of the steps since w_{j−1} increased L (ρ = 0.75), or (2) η was not halved at
  w_{j−1} and L_max did not grow since (:class:`StepSizeRule`). Everything is per image, as tensors.

Each run returns, per image, its first misclassifying point if it found one, else the point with the
highest loss (not the last iterate, which ART's APGD returns). ``restarts = R``: images still
classified correctly are attacked again from a new random start (AutoAttack's rule), keeping the
higher loss. Defaults: 100 steps (N), 1 restart, CE, L∞. ``steps`` gradient evaluations per run.
Shapes: x (B, C, H, W) in [0, 1], y (B,), eps (B,) absolute radii in the norm.
"""

from __future__ import annotations

from itertools import pairwise
from typing import NamedTuple

import torch

from robench.attacks.base import Attack, attack_objective, check_settings, per_image
from robench.attacks.registry import ATTACKS
from robench.errors import RobenchError
from robench.norms import check_norm, project, random_start, steepest_ascent


def checkpoints(steps: int) -> list[int]:
    """The paper's checkpoints W = {w_j = ⌈p_j·steps⌉ : p_j ≤ 1}, sorted, without repeats.

    The p_j are computed exactly in hundredths, so that e.g. 0.22·100 is 22, not 23.
    """
    hundredths = [0, 22]
    while True:
        nxt = hundredths[-1] + max(hundredths[-1] - hundredths[-2] - 3, 6)
        if nxt > 100:
            break
        hundredths.append(nxt)
    return sorted({-(-p * steps // 100) for p in hundredths})


def check_fraction(name: str, flag: str, value: float) -> None:
    """Refuse an APGD parameter (ρ, α) outside (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise RobenchError(f"{name}: {flag} must be a number in (0, 1], got {value!r}")


class StepSizeRule:
    """Per-image step sizes η (B,) and the checkpoint rule of Algorithm 1.

    Built with η⁽⁰⁾ and L(x⁰); :meth:`update` is told, for iteration k = 0 .. steps−1, the loss of the
    new iterate x^(k+1) and returns (improved, halve) masks: L_max grew, and η was halved (at a
    checkpoint k = w_j, j ≥ 1) so the iterate should go back to x_max. Condition 1 counts the increases
    L(x^(i+1)) > L(x^i) for i = w_{j−1} .. w_j − 1; condition 2 holds when η was not halved at w_{j−1}
    (there is no check at w₀ = 0) and L_max has not changed since. No host–device synchronisation.
    """

    def __init__(self, eta: torch.Tensor, loss0: torch.Tensor, steps: int, rho: float = 0.75):
        marks = checkpoints(steps)
        self.windows = {w: w - prev for prev, w in pairwise(marks)}  # checkpoint -> its window length
        self.rho = rho
        self.eta = eta.clone()
        self.loss = loss0                      # L of the current iterate
        self.loss_max = loss0                  # L_max
        self.loss_max_at_check = loss0         # L_max at the last checkpoint
        self.increases = torch.zeros_like(loss0, dtype=torch.long)
        self.halved = torch.zeros_like(loss0, dtype=torch.bool)  # η halved at the last checkpoint

    def update(self, k: int, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        increased = loss > self.loss
        improved = loss > self.loss_max
        self.loss_max = torch.where(improved, loss, self.loss_max)
        halve = torch.zeros_like(improved)
        if k in self.windows:
            stalled = ~self.halved & (self.loss_max == self.loss_max_at_check)              # condition 2
            halve = (self.increases < self.rho * self.windows[k]) | stalled                  # condition 1 or 2
            self.eta = torch.where(halve, self.eta / 2, self.eta)
            self.halved = halve
        if k == 0 or k in self.windows:  # a new window starts at w_j with the step w_j -> w_j + 1
            self.loss_max_at_check = self.loss_max
            self.increases = increased.long()
        else:
            self.increases = self.increases + increased
        self.loss = torch.where(halve, self.loss_max, loss)
        return improved, halve


class APGDRun(NamedTuple):
    """One APGD run: the point returned per image (first misclassifying, else highest loss), its
    highest loss L_max (B,), whether it was misclassified (B,), the last iterate and the final η (B,)."""

    x_best: torch.Tensor
    loss_best: torch.Tensor
    fooled: torch.Tensor
    x_last: torch.Tensor
    eta: torch.Tensor


def auto_pgd(model, x, labels, radius, eta, steps: int, loss: str, norm: str = "Linf", rho: float = 0.75,
             alpha: float = 0.75, targeted: bool = False, true_labels: torch.Tensor | None = None,
             start: torch.Tensor | None = None) -> APGDRun:
    """One run of Algorithm 1 from ``start`` (default x) maximising ``attack_objective``.

    ``labels`` are the true labels (untargeted) or the targets (targeted, with ``true_labels``: an
    image counts as fooled when it leaves its true class). ``radius`` broadcasts against x, ``eta`` (B,)
    is η⁽⁰⁾ in absolute units. ``steps`` steps: gradients at x⁰ .. x^(N−1), the loss also at x^N.
    """
    x, truth = x.detach(), (true_labels if targeted else labels)
    shape = (-1,) + (1,) * (x.dim() - 1)

    def evaluate(point, with_grad):
        point = point.detach().requires_grad_(with_grad)
        with torch.set_grad_enabled(with_grad):
            z = model(point)
            objective = attack_objective(z, labels, loss, targeted, true_labels)
            grad = torch.autograd.grad(objective.sum(), point)[0] if with_grad else None
        return objective.detach(), z.detach().argmax(1) != truth, grad

    x_k = (x if start is None else start).detach()
    loss_k, fooled, grad = evaluate(x_k, True)
    rule = StepSizeRule(eta.to(device=x.device, dtype=x.dtype), loss_k, steps, rho)
    x_prev, x_max, grad_max, x_fool = x_k, x_k, grad, x_k
    for k in range(steps):
        a = 1.0 if k == 0 else alpha
        z = project(x_k + rule.eta.view(shape) * steepest_ascent(grad, norm), x, radius, norm)
        x_new = project(x_k + a * (z - x_k) + (1 - a) * (x_k - x_prev), x, radius, norm)
        last = k == steps - 1
        loss_new, wrong, grad_new = evaluate(x_new, not last)
        x_fool = torch.where((wrong & ~fooled).view(shape), x_new, x_fool)
        fooled = fooled | wrong
        improved, halve = rule.update(k, loss_new)
        x_max = torch.where(improved.view(shape), x_new, x_max)
        if not last:  # after the last step there is nothing left to restart
            grad_max = torch.where(improved.view(shape), grad_new, grad_max)
            if k in rule.windows:
                x_new = torch.where(halve.view(shape), x_max, x_new)
                grad_new = torch.where(halve.view(shape), grad_max, grad_new)
        x_prev, x_k, grad = x_k, x_new, grad_new
    x_best = torch.where(fooled.view(shape), x_fool, x_max)
    return APGDRun(x_best, rule.loss_max, fooled, x_k, rule.eta)


@ATTACKS.register("apgd", "native", "Auto-PGD, L-inf or L2, untargeted (Croce & Hein 2020): momentum, step size "
                                    "halved at checkpoints; CE, margin or DLR loss")
class APGD(Attack):
    name = "apgd"
    targeted = False

    def __init__(self, steps: int = 100, step_size: float | None = None, restarts: int = 1, loss: str = "ce",
                 norm: str = "Linf", rho: float = 0.75, alpha: float = 0.75):
        check_settings(self.name, steps, step_size, restarts, loss)
        check_fraction(self.name, "rho", rho)
        check_fraction(self.name, "alpha", alpha)
        self.norm = check_norm(self.name, norm)
        self.steps, self.restarts, self.loss, self.rho, self.alpha = steps, restarts, loss, rho, alpha
        self.step_size = step_size if step_size is not None else 2.0

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": self.step_size, "restarts": self.restarts, "attack_loss": self.loss,
                "norm": self.norm}

    def run(self, model, x, y, radius) -> APGDRun:
        """One run from a random start on images x (B, C, H, W) with radii ``radius`` (B, 1, 1, 1)."""
        return auto_pgd(model, x, y, radius, self.step_size * radius.flatten(), self.steps, self.loss, self.norm,
                        self.rho, self.alpha, start=random_start(x, radius, self.norm, on_sphere=True))

    def __call__(self, model, x, y, eps):
        if not bool((eps > 0).any()):
            return x.clone()
        radius = per_image(eps, x)
        first = self.run(model, x, y, radius)
        best, best_loss = first.x_best.clone(), first.loss_best.clone()
        robust = ~first.fooled & (eps.to(x.device) > 0)
        for _ in range(self.restarts - 1):
            idx = robust.nonzero().flatten()
            if len(idx) == 0:
                break
            again = self.run(model, x[idx], y[idx], radius[idx])
            better = again.fooled | (again.loss_best > best_loss[idx])
            best[idx[better]] = again.x_best[better]
            best_loss[idx[better]] = again.loss_best[better]
            robust[idx[again.fooled]] = False
        return project(best, x, radius, self.norm)

