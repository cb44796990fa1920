"""``fab``: FAB-T, the targeted fast adaptive boundary attack (Croce & Hein 2020, ICML, Sec. 3, Algorithm 1),
L∞ or L2, run at a given ε as AutoAttack runs it.

FAB looks for the *smallest* adversarial perturbation. Towards a target class t it linearises the
boundary g = f_t − f_y at the current point xᵏ, ``g(xᵏ) + ∇g(xᵏ)·(z − xᵏ) = 0``, and projects onto that
hyperplane intersected with the box [0, 1]^d (:func:`box_projection`, the paper's box-constrained
projection) both xᵏ, giving δᵏ, and the original x, giving δ_origᵏ; then

    xᵏ⁺¹ = P_[0,1]((1 − α)(xᵏ + η δᵏ) + α(x + η δ_origᵏ)),   α = min(‖δᵏ‖ / (‖δᵏ‖ + ‖δ_origᵏ‖), α_max),

a step biased towards the original image. When xᵏ⁺¹ is misclassified it is remembered if it is the
closest yet and FAB steps back towards x: xᵏ⁺¹ ← x + β(xᵏ⁺¹ − x). The paper's and AutoAttack's defaults:
α_max = 0.1, overshoot η = 1.05, backward step β = 0.9, 100 iterations.

FAB-T (AutoAttack's standard ``fab-t``: 100 iterations, 1 restart, 9 target classes): for each of the
``targets`` classes with the largest clean logits other than y (capped at D − 1), most likely first, and
for each restart, FAB runs on the images not yet broken; an image is broken when the closest
misclassified point found has ‖δ‖ ≤ ε, and keeps that point (its first success). As in AutoAttack the
first restart starts at x itself, so ``restarts = 1`` is deterministic; restart r > 1 starts at a random
point at distance ε_start = ε/2 from x (a uniform L∞ direction or a Gaussian L2 direction, scaled, then
clipped to [0, 1]), drawn from torch's global generator on x's device. As in AutoAttack, no final search.

Images not broken within ε (FAB's closest point lies outside the ball, or none was found, or ε = 0, or
the image is misclassified already) are returned as x itself, as AutoAttack returns them, rather than
FAB's point projected into the ball: that point was never evaluated, and robust accuracy only asks
whether an image is broken.

``targeted = False``: robench's targeted attacks aim at (y + 1) mod D and report hitting it; FAB-T tries
several targets only to misclassify. ``settings()`` records attack_loss ``margin``: FAB works on the
boundary of the logit margin f_t − f_y; it has no step size.
Shapes: x (B, C, H, W) in [0, 1], y (B,), eps (B,) absolute radii in ``norm``; x_adv like x.
"""

from __future__ import annotations

import math

import torch

from robench.attacks.base import Attack, check_settings, per_image
from robench.attacks.registry import ATTACKS
from robench.errors import RobenchError
from robench.norms import check_norm, distance, flat_norm


def box_projection(point: torch.Tensor, w: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    """The step δ (N, d) of least ‖δ‖ (L∞ or L2) from ``point`` (N, d) onto {z : w·z = b} ∩ [0, 1]^d.

    ``w`` (N, d) and ``b`` (N,) define one hyperplane per row. Let r = b − w·point be what w·δ must add and
    room_i the distance from point_i to the box face in the direction sign(r·w_i) that helps. The KKT
    conditions give δ_i = sign(r·w_i)·min(λ, room_i) for L∞ and δ_i = sign(r·w_i)·min(λ|w_i|, room_i) for
    L2, with the least λ ≥ 0 at which the gain G(λ) = Σ|w_i|·δ_i·sign(r·w_i) reaches |r|. G is piecewise
    linear and nondecreasing, with breakpoints room_i (L∞) or room_i/|w_i| (L2): sorting them finds the
    piece holding |r| in O(d log d), with no branch per row (so no host-device sync). If the hyperplane
    misses the box (G never reaches |r|), δ is the box corner closest to it, δ_i = sign(r·w_i)·room_i:
    the limit of the feasible solutions as the hyperplane leaves the box. Coordinates with w_i = 0 stay.
    """
    residual = b - (w * point).sum(1)
    direction = torch.where(residual[:, None] < 0, -w, w).sign()   # the helpful sign of each coordinate
    need = residual.abs()[:, None]
    room = torch.where(direction > 0, 1 - point, point).clamp_min(0) * direction.abs()
    size = w.abs()
    if norm == "Linf":
        key, slope = room, size
    else:
        key, slope = torch.where(size > 0, room / size.clamp_min(1e-30), 0.0), size * size
    key, order = key.sort(dim=1)
    slope = slope.gather(1, order)
    gained = (size * room).gather(1, order).cumsum(1)               # Σ over breakpoints ≤ key_j of |w|·room
    left = slope.sum(1, keepdim=True) - slope.cumsum(1)             # slope still growing after key_j
    below = (gained + key * left < need).sum(1, keepdim=True)       # breakpoints where G is still short
    zero = torch.zeros_like(need)
    gained = torch.cat((zero, gained), 1).gather(1, below)
    left = torch.cat((slope.sum(1, keepdim=True), left), 1).gather(1, below)
    short = (need - gained).clamp_min(0)
    lam = torch.where(left > 0, short / left.clamp_min(1e-30), torch.where(short > 0, math.inf, 0.0))
    step = torch.minimum(lam if norm == "Linf" else lam * size, room)
    return torch.where(size > 0, direction * step, zero)


def _norm_of(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """‖δ‖ per row of ``delta`` (N, d), shape (N,)."""
    return delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)


def _check_number(name: str, flag: str, value, low: float, high: float, open_low: bool = True) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
        and (low < value if open_low else low <= value) and value <= high
    if not ok:
        bound = f"{'>' if open_low else '>='} {low} and <= {high}"
        raise RobenchError(f"{name}: {flag} must be a number {bound}, got {value!r}")


@ATTACKS.register("fab", "native", "FAB-T, L-inf or L2 (Croce & Hein 2020): minimal-distortion boundary steps "
                                   "towards the 9 likeliest other classes; broken if within eps")
class FAB(Attack):
    name = "fab"
    targeted = False

    def __init__(self, steps: int = 100, restarts: int = 1, targets: int = 9, norm: str = "Linf",
                 alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9):
        check_settings(self.name, steps, None, restarts, "margin")
        if isinstance(targets, bool) or not isinstance(targets, int) or targets < 1:
            raise RobenchError(f"{self.name}: targets must be an integer >= 1, got {targets!r}")
        self.norm = check_norm(self.name, norm)
        _check_number(self.name, "alpha_max", alpha_max, 0.0, 1.0, open_low=False)
        _check_number(self.name, "eta", eta, 0.0, math.inf)
        _check_number(self.name, "beta", beta, 0.0, 1.0)
        self.steps, self.restarts, self.targets = steps, restarts, targets
        self.alpha_max, self.eta, self.beta = float(alpha_max), float(eta), float(beta)

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": None, "restarts": self.restarts, "attack_loss": "margin",
                "norm": self.norm}

    def __call__(self, model, x, y, eps):
        x, eps = x.detach(), eps.to(device=x.device, dtype=x.dtype)
        if not bool((eps > 0).any()):
            return x.clone()
        y = y.to(x.device)
        with torch.no_grad():
            z = model(x)
        n_targets = min(self.targets, z.shape[1] - 1)
        targets = z.scatter(1, y[:, None], -math.inf).topk(max(n_targets, 1), dim=1).indices  # likeliest first
        robust = (z.argmax(1) == y) & (eps > 0)
        x_adv = x.clone()
        for k in range(n_targets):
            for restart in range(self.restarts):
                idx = robust.nonzero().flatten()
                if len(idx) == 0:
                    return x_adv
                xi, yi = x[idx], y[idx]
                start = xi if restart == 0 else self._random_start(xi, per_image(eps[idx], xi) / 2)
                found, dist = self.run_towards(model, xi, yi, targets[idx, k], start)
                with torch.no_grad():
                    broken = (model(found).argmax(1) != yi) & (dist <= eps[idx])
                x_adv[idx[broken]] = found[broken]
                robust[idx[broken]] = False
        return x_adv

    def _random_start(self, x: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        """A random point at distance ``radius`` from x in the attack's norm, clipped to [0, 1]."""
        if self.norm == "Linf":
            t = torch.rand_like(x) * 2 - 1
            t = t / t.flatten(1).abs().amax(1).clamp_min(1e-12).view(radius.shape)
        else:
            t = torch.randn_like(x)
            t = t / flat_norm(t).clamp_min(1e-12)
        return (x + radius * t).clamp(0.0, 1.0)

    def run_towards(self, model, x, y, target, start) -> tuple[torch.Tensor, torch.Tensor]:
        """One FAB run of ``steps`` iterations on the boundary f_target = f_y from ``start``.

        Returns the closest misclassified point found (x where none) and its distance from x, shape (B,)
        (inf where none). The loop never waits on the device: no ``.item()``, ``bool(tensor)`` or indexing
        by masks, so it runs unchanged on tensors of the ``meta`` device.
        """
        n, shape, column = len(x), x.shape, (-1,) + (1,) * (x.dim() - 1)
        flat_x = x.flatten(1)
        best = x.clone()
        best_dist = torch.full((n,), math.inf, dtype=x.dtype, device=x.device)
        xk = start.detach()
        for _ in range(self.steps):
            with torch.enable_grad():   # also when the caller runs under torch.no_grad()
                xk = xk.detach().requires_grad_(True)
                z = model(xk)
                gap = (z.gather(1, target[:, None]) - z.gather(1, y[:, None]))[:, 0]   # g = f_t − f_y
                (grad,) = torch.autograd.grad(gap.sum(), xk)   # one backward pass: ∇g, not the whole Jacobian
            with torch.no_grad():
                w = grad.flatten(1)
                b = (w * xk.flatten(1)).sum(1) - gap.detach()   # the linearised boundary: w·z = b
                both = box_projection(torch.cat((xk.flatten(1), flat_x)), torch.cat((w, w)), torch.cat((b, b)),
                                      self.norm)
                size = _norm_of(both, self.norm).clamp_min(1e-8)
                to_here, to_orig = size[:n], size[n:]
                alpha = (to_here / (to_here + to_orig)).clamp(max=self.alpha_max).view(column)
                step, step_orig = both[:n].view(shape), both[n:].view(shape)
                xk = ((1 - alpha) * (xk + self.eta * step) + alpha * (x + self.eta * step_orig)).clamp(0.0, 1.0)
                fooled = model(xk).argmax(1) != y
                dist = distance(xk, x, self.norm)
                closer = fooled & (dist < best_dist)
                best = torch.where(closer.view(column), xk, best)
                best_dist = torch.where(closer, dist, best_dist)
                xk = torch.where(fooled.view(column), x + self.beta * (xk - x), xk)
        return best, best_dist
