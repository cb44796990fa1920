"""``square``: the Square Attack, L∞ or L2, untargeted, score-based (Andriushchenko, Croce, Flammarion & Hein 2020).

A random search that reads only the logits (no gradients: every model call runs under
``torch.no_grad()``). Per image it minimises the paper's margin loss L = z_y − max_{j≠y} z_j and
stops as soon as the image is misclassified (the paper's Algorithm 1):

* the start (one query): ``Linf`` — vertical stripes, x + ρ·ε with ρ ∈ {−1, 1} drawn per
  (channel, column) (Algorithm 2); ``L2`` — the paper's "windows": a grid of squares of side
  max(⌊H/5⌋, 1), each holding ±η (eq. 3) with one sign per channel, rescaled to ‖δ‖₂ = ε;
* then one candidate per iteration, kept if it lowers the margin (or misclassifies):
  ``Linf`` (Algorithm 2) sets one square of side h at a uniformly random position to x ± ε, one
  random sign per channel (a sign vector that would change nothing is negated, which for one
  channel is the authors' redraw); ``L2`` (Algorithm 3) moves, per channel, the L2 mass of a
  second random square W2 and the unused ε² − ‖δ‖₂² into a square W1 shaped ±η, so ‖δ‖₂ = ε.

Square size: h = max(1, round(√(p·H·W))), at most min(H, W) (:func:`square_side`; for L2 at least
3 and odd, as in the authors' and AutoAttack's code, since η needs two halves). p starts at
``p_init`` = 0.8 and is halved at iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of
a 10000-query schedule rescaled to the budget N = ``steps``: iteration i (0-based, after the start)
reads i' = ⌊10000·i/N⌋ and p = p_init/2^k, k the number of milestones m < i' (:func:`p_schedule`,
AutoAttack's ``p_selection`` with ``rescale_schedule``). N = 5000: p halves from i = 6, 26, 101,
251, 501, 1001, 2001, 3001, 4001; N = 1000: from i = 2, 6, 21, 51, 101, 201, 401, 601, 801.

Queries: every model evaluation of an image is one query (the start, then one per iteration);
``steps`` (default 5000, AutoAttack's standard) is the budget per image and run: at most
steps − 1 iterations follow the start. Only images still classified correctly are evaluated: the
batch drops the misclassified ones right after the start (so they cost exactly one query) and
then every :data:`CHECK_EVERY` iterations (one host sync each), so an image fooled between two
checks may be evaluated (and counted) up to CHECK_EVERY − 1 more times, never past its budget.
Images with ε = 0 are not evaluated. ``restarts`` = R: after each run the images still classified
correctly run again from a new start (another ``steps`` queries each, at most R·steps in all); an
image keeps its first misclassifying example, else its lowest-margin one.

After a call: ``queries`` (B,) int64 and ``margins`` (B,) (the best margin found; +inf where
ε = 0), on the CPU. Setting ``record = True`` on an instance also fills ``history`` (T, B): every
image's best margin after the start and after each iteration of each run (non-increasing).
Randomness: torch's global generator on x.device. Shapes: x (B, C, H, W) in [0, 1], y (B,),
eps (B,) absolute radii in the attack's norm.
"""

from __future__ import annotations

import functools
import math

import torch

from robench.attacks.base import Attack, attack_objective, check_settings, per_image
from robench.attacks.registry import ATTACKS
from robench.errors import RobenchError
from robench.norms import check_norm, flat_norm, project

P_MILESTONES = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
"""Iterations of the paper's 10000-query schedule after which p is halved."""
CHECK_EVERY = 8
"""Iterations between two drops of the fooled images from the batch (each one host sync and early exit)."""


def p_schedule(iteration: int, steps: int, p_init: float = 0.8) -> float:
    """The fraction p of the image a square covers at ``iteration`` (0-based, after the start) of ``steps`` queries."""
    rescaled = 10000 * iteration // steps
    return p_init / 2 ** sum(rescaled > m for m in P_MILESTONES)


def square_side(p: float, height: int, width: int, norm: str = "Linf") -> int:
    """The side of the square covering a fraction ``p`` of an H×W image (L2: at least 3 and odd)."""
    side = max(1, round(math.sqrt(p * height * width)))
    if norm == "L2":
        side = max(side, 3)
        side += 1 - side % 2
    return min(side, height, width)


def eta(side: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The paper's η for an s×s square (eq. 3): a rectangle of ⌊s/2⌋ rows holding Σ_{k≥d} 1/(k+1)²
    (d the Chebyshev distance to its centre) above a negated one of s − ⌊s/2⌋ rows; each rectangle
    and the whole have unit L2 norm (as in the authors' code). Shape (s, s)."""

    def rectangle(rows: int) -> torch.Tensor:
        i = (torch.arange(rows, device=device) - rows // 2).abs()
        j = (torch.arange(side, device=device) - side // 2).abs()
        dist = torch.maximum(i[:, None], j[None, :])
        k = torch.arange(max(rows, side) // 2 + 1, device=device, dtype=dtype)
        rect = ((k >= dist[..., None]) / (k + 1) ** 2).sum(-1)
        return rect / rect.norm().clamp_min(1e-12)

    pattern = torch.cat([rectangle(side // 2), -rectangle(side - side // 2)])
    return pattern / pattern.norm()


@functools.lru_cache(maxsize=64)
def eta_and_transpose(side: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """η and ηᵀ stacked, (2, s, s), computed once per side (the square's shape is drawn as one or the other)."""
    e = eta(side, device, dtype)
    return torch.stack([e, e.T])


def random_signs(shape, like: torch.Tensor) -> torch.Tensor:
    """Independent ±1 (dtype and device of ``like``)."""
    return torch.randint(0, 2, shape, device=like.device).to(like.dtype) * 2 - 1


def random_squares(n: int, side: int, height: int, width: int, device) -> tuple[torch.Tensor, ...]:
    """One s×s square per image, its corner uniform in {0..H−s}×{0..W−s}: the mask (n, 1, H, W) and
    every pixel's row (n, H) and column (n, W) counted from the corner (0..s−1 inside the square)."""
    rows = torch.arange(height, device=device)[None] - torch.randint(0, height - side + 1, (n, 1), device=device)
    cols = torch.arange(width, device=device)[None] - torch.randint(0, width - side + 1, (n, 1), device=device)
    mask = ((rows >= 0) & (rows < side))[:, None, :, None] & ((cols >= 0) & (cols < side))[:, None, None, :]
    return mask, rows, cols


def window_norm(t: torch.Tensor) -> torch.Tensor:
    """‖t‖₂ per image and channel, (B, C, 1, 1)."""
    return t.pow(2).sum((2, 3), keepdim=True).sqrt()


def linf_start(x: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Algorithm 2's start: vertical stripes x ± ε, one sign per (image, channel, column)."""
    return (x + radius * random_signs((x.shape[0], x.shape[1], 1, x.shape[3]), x)).clamp(0, 1)


def linf_candidate(x: torch.Tensor, current: torch.Tensor, radius: torch.Tensor, side: int) -> torch.Tensor:
    """Algorithm 2's step: one random square per image set to x ± ε (a sign per channel), in [0, 1]."""
    mask, _, _ = random_squares(len(x), side, x.shape[2], x.shape[3], x.device)
    signs = random_signs((x.shape[0], x.shape[1], 1, 1), x)
    candidate = torch.where(mask, x + signs * radius, current).clamp(0, 1)
    unchanged = (candidate == current).flatten(1).all(1)[:, None, None, None]
    return torch.where(unchanged & mask, (x - signs * radius).clamp(0, 1), candidate)  # -sign always changes


def l2_start(x: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Algorithm 3's start: the grid of ±η windows (AutoAttack's layout), ‖δ‖₂ = ε, then in [0, 1]."""
    n, channels, height, width = x.shape
    side = max(height // 5, 1)

    def axis(size: int):  # each pixel's tile, its place in the tile, and whether a tile covers it
        i = torch.arange(size, device=x.device) - max((size - 5 * side) // 2, 0)
        tile = i.div(side, rounding_mode="floor")
        return tile.clamp(0, size // side - 1), i.remainder(side), (i >= 0) & (tile < size // side)

    (th, lh, oh), (tw, lw, ow) = axis(height), axis(width)
    patterns = eta_and_transpose(side, x.device, x.dtype)  # each tile: η or its transpose, at random
    flips = torch.randint(0, 2, (n, height // side, width // side), device=x.device)
    values = patterns[flips[:, th[:, None], tw[None, :]], lh[None, :, None], lw[None, None, :]]
    signs = random_signs((n, channels, height // side, width // side), x)[:, :, th[:, None], tw[None, :]]
    delta = values[:, None] * signs * (oh[:, None] & ow[None, :])
    return (x + delta / flat_norm(delta).clamp_min(1e-12) * radius).clamp(0, 1)


def l2_candidate(x: torch.Tensor, current: torch.Tensor, radius: torch.Tensor, side: int) -> torch.Tensor:
    """Algorithm 3's step: per channel, the mass of W1 ∪ W2 and the unused ε² go into W1 shaped as
    ρη* + δ_W1/‖δ_W1‖₂, W2 is emptied; δ is rescaled to ‖δ‖₂ = ε, then x + δ clipped to [0, 1]."""
    n, channels, height, width = x.shape
    delta = current - x
    mask1, rows, cols = random_squares(n, side, height, width, x.device)
    both = mask1 | random_squares(n, side, height, width, x.device)[0]
    flips = torch.randint(0, 2, (n, 1, 1), device=x.device)
    shaped = eta_and_transpose(side, x.device, x.dtype)[flips, rows.clamp(0, side - 1)[:, :, None],
                                                        cols.clamp(0, side - 1)[:, None, :]][:, None] * mask1
    unused = (radius ** 2 - delta.pow(2).sum((1, 2, 3), keepdim=True)).clamp_min(0)
    inside1 = delta * mask1
    moved = random_signs((n, channels, 1, 1), x) * shaped + inside1 / window_norm(inside1).clamp_min(1e-12)
    available = (window_norm(delta * both) ** 2 + unused / channels).sqrt()
    delta = torch.where(both, 0.0, delta) + moved * (available / window_norm(moved).clamp_min(1e-12))
    return (x + delta / flat_norm(delta).clamp_min(1e-12) * radius).clamp(0, 1)


@ATTACKS.register("square", "native",
                  "Square Attack, L-inf or L2, untargeted (Andriushchenko et al. 2020): score-based random search")
class Square(Attack):
    name, targeted = "square", False
    record = False
    """Set True on an instance to record every image's best margin per iteration in ``history``."""

    def __init__(self, steps: int = 5000, restarts: int = 1, p_init: float = 0.8, norm: str = "Linf"):
        check_settings(self.name, steps, None, restarts, "margin")
        if isinstance(p_init, bool) or not isinstance(p_init, (int, float)) or not 0 < p_init <= 1:
            raise RobenchError(f"{self.name}: p_init must be a number in (0, 1], got {p_init!r}")
        self.steps, self.restarts, self.p_init = steps, restarts, float(p_init)
        self.norm = check_norm(self.name, norm)
        self.queries: torch.Tensor | None = None
        self.margins: torch.Tensor | None = None
        self.history: torch.Tensor | None = None

    def settings(self) -> dict:
        return {"steps": self.steps, "step_size": None, "restarts": self.restarts, "attack_loss": "margin",
                "norm": self.norm}

    @torch.no_grad()
    def __call__(self, model, x, y, eps):
        n = len(x)
        self.queries, self.margins = torch.zeros(n, dtype=torch.long), torch.full((n,), math.inf, dtype=x.dtype)
        self.history = None
        if not bool((eps > 0).any()):
            return x.clone()
        radius = per_image(eps, x)
        state = {"best": x.clone(), "margin": self.margins.to(x.device), "todo": eps.to(x.device) > 0,
                 "queries": self.queries.to(x.device), "history": [] if self.record else None}
        for _ in range(self.restarts):
            idx = state["todo"].nonzero()[:, 0]
            if len(idx) == 0:
                break
            self._run(model, x, y, radius, idx, state)
        self.queries, self.margins = state["queries"].cpu(), state["margin"].cpu()
        if self.record:
            self.history = torch.stack(state["history"]).cpu()
        return project(state["best"], x, radius, self.norm)

    def _evaluate(self, model, images, labels, dtype):
        z = model(images)
        return -attack_objective(z, labels, "margin", False).to(dtype), z.argmax(1) != labels

    def _run(self, model, x, y, radius, idx, state) -> None:
        """One run from a new start on the images ``idx``; results go into ``state`` (the whole batch)."""
        start, candidate = (linf_start, linf_candidate) if self.norm == "Linf" else (l2_start, l2_candidate)
        xs, ys, rs, first = x[idx], y[idx], radius[idx], state["queries"][idx]
        current = start(xs, rs)
        margin, fooled = self._evaluate(model, current, ys, x.dtype)
        alive, spent = ~fooled, torch.ones_like(idx)

        def store():
            better = (margin < state["margin"][idx]) | ~alive
            state["best"][idx] = torch.where(better[:, None, None, None], current, state["best"][idx])
            state["margin"][idx] = torch.where(better, margin, state["margin"][idx])
            state["todo"][idx], state["queries"][idx] = alive, first + spent

        store()
        if state["history"] is not None:
            state["history"].append(state["margin"].clone())
        for i in range(self.steps - 1):
            if i % CHECK_EVERY == 0:
                store()
                keep = alive.nonzero()[:, 0]
                if len(keep) == 0:
                    return
                if len(keep) < len(idx):
                    idx, xs, ys, rs, first = idx[keep], xs[keep], ys[keep], rs[keep], first[keep]
                    current, margin, alive, spent = current[keep], margin[keep], alive[keep], spent[keep]
            side = square_side(p_schedule(i, self.steps, self.p_init), x.shape[2], x.shape[3], self.norm)
            trial = candidate(xs, current, rs, side)
            trial_margin, trial_fooled = self._evaluate(model, trial, ys, x.dtype)
            better = alive & ((trial_margin < margin) | trial_fooled)
            current = torch.where(better[:, None, None, None], trial, current)
            margin = torch.where(better, trial_margin, margin)
            alive, spent = alive & ~trial_fooled, spent + 1
            if state["history"] is not None:
                store()
                state["history"].append(state["margin"].clone())
        store()
