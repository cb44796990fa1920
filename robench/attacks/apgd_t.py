"""``apgd-t``: targeted Auto-PGD over several targets, L∞ or L2 (Croce & Hein 2020, ICML; AutoAttack's APGD-T).

AutoAttack's APGD-T: for each of the ``targets`` classes t ≠ y with the highest clean logits
(default 9, at most D − 1), in that order, run APGD (Algorithm 1, :func:`~robench.attacks.apgd.auto_pgd`)
maximising the targeted DLR −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2) (needs D ≥ 4), ``restarts``
times per target, each time only on the images still classified correctly. An image keeps its first
misclassifying example; an image never misclassified keeps the point where some target came closest
to overtaking its class (the highest targeted DLR); an image misclassified to begin with is left as is.

Its goal is misclassification, not a given target, so ``targeted`` is False: in robench
``targeted = True`` means "aims at t = (y + 1) mod D and reports target success", which APGD-T does not.
Defaults: 100 steps and η⁽⁰⁾ = 2ε per run (``step_size`` = 2), 1 restart, 9 targets, L∞, ρ = α = 0.75.
Shapes: x (B, C, H, W) in [0, 1], y (B,), eps (B,) absolute radii in the norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robench.attacks.apgd import auto_pgd, check_fraction
from robench.attacks.base import Attack, check_dlr_classes, check_settings, per_image
from robench.attacks.registry import ATTACKS
from robench.errors import RobenchError
from robench.norms import check_norm, project, random_start


def ranked_targets(z: torch.Tensor, y: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` classes other than y with the highest logits z (B, D), best first: (B, count)."""
    others = z.masked_fill(F.one_hot(y, z.shape[1]).bool(), float("-inf"))
    return others.topk(count, dim=1).indices


@ATTACKS.register("apgd-t", "native", "targeted Auto-PGD over the top-9 other classes (Croce & Hein 2020), "
                                      "targeted DLR loss, L-inf or L2; aims at misclassification")
class APGDT(Attack):
    name = "apgd-t"
    targeted = False  # misclassification through several targets, not robench's (y + 1) mod D target

    def __init__(self, steps: int = 100, step_size: float | None = None, restarts: int = 1, targets: int = 9,
                 norm: str = "Linf", rho: float = 0.75, alpha: float = 0.75):
        check_settings(self.name, steps, step_size, restarts, "dlr")
        if isinstance(targets, bool) or not isinstance(targets, int) or targets < 1:
            raise RobenchError(f"{self.name}: targets must be an integer >= 1, got {targets!r}")
        check_fraction(self.name, "rho", rho)
        check_fraction(self.name, "alpha", alpha)
        self.norm = check_norm(self.name, norm)
        self.steps, self.restarts, self.targets, self.rho, self.alpha = steps, restarts, targets, rho, alpha
        self.step_size = step_size if step_size is not None else 2.0

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": self.step_size, "restarts": self.restarts, "attack_loss": "dlr",
                "norm": self.norm}

    def __call__(self, model, x, y, eps):
        with torch.no_grad():
            z = model(x)
        check_dlr_classes(z.shape[1], targeted=True)
        if not bool((eps > 0).any()):
            return x.clone()
        radius = per_image(eps, x)
        ranked = ranked_targets(z, y, min(self.targets, z.shape[1] - 1))
        robust = (z.argmax(1) == y) & (eps.to(x.device) > 0)
        best = x.clone()
        best_loss = torch.full((len(x),), float("-inf"), dtype=x.dtype, device=x.device)
        for rank in range(ranked.shape[1]):
            for _ in range(self.restarts):
                idx = robust.nonzero().flatten()
                if len(idx) == 0:
                    return project(best, x, radius, self.norm)
                xs, rs = x[idx], radius[idx]
                run = auto_pgd(model, xs, ranked[idx, rank], rs, self.step_size * rs.flatten(), self.steps, "dlr",
                               self.norm, self.rho, self.alpha, targeted=True, true_labels=y[idx],
                               start=random_start(xs, rs, self.norm, on_sphere=True))
                better = run.fooled | (run.loss_best > best_loss[idx])
                best[idx[better]] = run.x_best[better]
                best_loss[idx[better]] = run.loss_best[better]
                robust[idx[run.fooled]] = False
        return project(best, x, radius, self.norm)
