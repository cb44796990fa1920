"""Attack strength ε: parsing grids and turning the paper's relative ε into per-image radii.

The paper (Sec. IV-C) bounds the noise n by ‖n‖∞ / ‖x‖∞ ≤ ε for each image ("relative",
robench's default); "absolute" is the usual ‖n‖ ≤ ε (RobustBench's convention, e.g. L∞ 8/255 or
L2 0.5). In the L2 threat model relative means ‖n‖₂ ≤ ε·‖x‖₂. Every attack receives absolute
per-image radii in its norm. Grid values may be written as fractions (``8/255``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from robench.errors import RobenchError

EPS_MODES = ("relative", "absolute")
MAX_GRID = 10_000
"""The most ε values a grid may hold: every ε is a CSV row per checkpoint and attack."""


def check_eps_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`EPS_MODES`, else a :class:`RobenchError` naming them."""
    if mode not in EPS_MODES:
        raise RobenchError(f"unknown --eps-mode {mode!r}; choose one of: {', '.join(EPS_MODES)}")
    return mode


def parse_number(text: str) -> float:
    """A float written as a decimal (``0.03``) or a fraction (``8/255``); ValueError otherwise."""
    numerator, slash, denominator = text.strip().partition("/")
    if not slash:
        return float(numerator)
    if not float(denominator):
        raise ValueError(f"division by zero in {text!r}")
    return float(numerator) / float(denominator)


def parse_eps_grid(text: str) -> list[float]:
    """``"0,0.01,0.02"``, ``"0,4/255,8/255"`` or ``"start:stop:num"`` (inclusive, like numpy.linspace) to
    sorted unique floats ≥ 0."""
    text = text.strip()
    try:
        if ":" in text:
            parts = text.split(":")
            if len(parts) != 3:
                raise ValueError
            start, stop, num = parse_number(parts[0]), parse_number(parts[1]), int(parts[2])
            if num < 1:
                raise ValueError
            if num > MAX_GRID:
                raise RobenchError(f"--eps-grid {text!r} asks for {num} values; at most {MAX_GRID} are allowed")
            with np.errstate(all="ignore"):  # an infinite end or span gives inf/nan values, refused below
                values = [float(v) for v in np.linspace(start, stop, num)]
        else:
            values = [parse_number(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise RobenchError(f"cannot parse --eps-grid {text!r}: give comma-separated numbers (0,0.01,0.02 or "
                           f"0,4/255,8/255) or start:stop:num (0:0.1:11)") from None
    if not values:
        raise RobenchError("--eps-grid is empty")
    if len(values) > MAX_GRID:
        raise RobenchError(f"--eps-grid holds {len(values)} values; at most {MAX_GRID} are allowed")
    bad = [v for v in values if not math.isfinite(v) or v < 0]
    if bad:
        raise RobenchError(f"--eps-grid values must be finite and >= 0, got {bad[0]}")
    return sorted({round(v, 12) for v in values})


def absolute_radii(x: torch.Tensor, eps: float, mode: str, norm: str = "Linf") -> torch.Tensor:
    """Per-image radii (N,) in ``norm`` for images x (N, ...) in [0, 1]: ε·‖x‖ (relative) or ε (absolute)."""
    if check_eps_mode(mode) == "relative":
        flat = x.flatten(1)
        return eps * (flat.abs().amax(1) if norm == "Linf" else flat.norm(dim=1))
    return torch.full((len(x),), float(eps), dtype=x.dtype, device=x.device)
