"""95 % intervals for accuracies and for differences of accuracies measured on n images.

An accuracy on n images is a binomial proportion k/n. :func:`wilson` is its Wilson score interval
(Wilson 1927; recommended over the normal "±" interval by Brown, Cai & DasGupta 2001), which stays
in [0, 1] and is sensible at 0 and 1. :func:`newcombe` is the interval of a difference p₁ − p₂ of two
such proportions built from their Wilson intervals (Newcombe 1998, "Interval estimation for the
difference between independent proportions", method 10). Two attacks on the *same* images are
paired, not independent: :func:`paired_newcombe` is the interval of such a difference from the four
counts of its 2 × 2 table (Newcombe 1998, "Improved confidence intervals for the difference between
binomial proportions based on paired data", method 10; recommended by Fagerland, Lydersen & Laake
2014), which the pairing makes narrow when the two attacks mostly agree.

The audit (:mod:`robench.evaluation.audit_checks`) grades with them; the report's tables
(:mod:`robench.report.intervals`) print them.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054
"""The two-sided 95 % quantile of the standard normal distribution."""
SMALL_SAMPLE = 100
"""At n ≤ 100 images one image moves an accuracy by at least one point: results say so."""


def wilson(k, n, z: float = Z95):
    """(low, high) of the Wilson score interval of ``k`` successes in ``n`` trials, as fractions in [0, 1].

    low/high = (p + z²/2n ∓ z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n), p = k/n. ``k`` and ``n`` may be
    arrays (numpy broadcasting; NaN where ``n`` ≤ 0 or is missing); a scalar ``n`` ≤ 0 is an error.
    """
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    if n.ndim == 0 and not n > 0:
        raise ValueError(f"wilson: n must be positive, got {n:g}")
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.where(n > 0, n, np.nan)
        p = k / n
        denominator = 1.0 + z * z / n
        centre = (p + z * z / (2.0 * n)) / denominator
        half = z * np.sqrt(np.maximum(p * (1.0 - p), 0.0) / n + z * z / (4.0 * n * n)) / denominator
        low, high = np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def newcombe(p1: float, p2: float, n: int, n2: int | None = None, z: float = Z95) -> tuple[float, float]:
    """(low, high) of the 95 % interval of p₁ − p₂, p₁ on ``n`` trials and p₂ on ``n2`` (default ``n``)
    (Newcombe's method 10).

    With (l₁, u₁), (l₂, u₂) the Wilson intervals of p₁ and p₂:
    low = d − √((p₁ − l₁)² + (u₂ − p₂)²), high = d + √((u₁ − p₁)² + (p₂ − l₂)²), d = p₁ − p₂.
    """
    n2 = n if n2 is None else n2
    l1, u1 = wilson(p1 * n, n, z)
    l2, u2 = wilson(p2 * n2, n2, z)
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def paired_newcombe(both: int, first_only: int, second_only: int, neither: int, z: float = Z95) -> tuple[float, float]:
    """(low, high) of the 95 % interval of p₁ − p₂ for two outcomes on the same n = both + first_only +
    second_only + neither items, p₁ = (both + first_only)/n, p₂ = (both + second_only)/n (Newcombe's paired
    method 10, "square and add" with the correlation of the two estimates).

    With (l₁, u₁), (l₂, u₂) the Wilson intervals of p₁ and p₂ and φ̂ the correlation of the 2 × 2 table,
    its numerator A = both·neither − first_only·second_only taken as A − n/2 when A > n/2, 0 when
    0 ≤ A ≤ n/2, A when A < 0 (φ̂ = 0 when a margin is empty):
    low = d − √((p₁ − l₁)² − 2φ̂(p₁ − l₁)(u₂ − p₂) + (u₂ − p₂)²),
    high = d + √((p₂ − l₂)² − 2φ̂(p₂ − l₂)(u₁ − p₁) + (u₁ − p₁)²), d = p₁ − p₂.
    """
    n = both + first_only + second_only + neither
    if n <= 0:
        raise ValueError(f"paired_newcombe: needs at least one item, got {n}")
    k1, k2 = both + first_only, both + second_only
    p1, p2 = k1 / n, k2 / n
    l1, u1 = wilson(k1, n, z)
    l2, u2 = wilson(k2, n, z)
    margins = k1 * (n - k1) * k2 * (n - k2)
    a = both * neither - first_only * second_only
    phi = 0.0 if margins == 0 else ((a - n / 2) if a > n / 2 else 0.0 if a >= 0 else a) / math.sqrt(margins)
    d = p1 - p2
    low = d - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    high = d + math.sqrt(max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    return max(low, -1.0), min(high, 1.0)


def noise_points(n: int) -> float:
    """The widest 95 % Wilson half-width on ``n`` images (at p = ½), in percentage points."""
    low, high = wilson(n / 2.0, n)
    return 100.0 * (high - low) / 2.0


def small_sample_note(n: int) -> str:
    """A one-line warning for n ≤ :data:`SMALL_SAMPLE` images, else ``""``."""
    if n > SMALL_SAMPLE:
        return ""
    return (f"n = {n}: one image is {100.0 / n:.1f} pts and differences under {noise_points(n):.1f} pts are "
            f"within noise")
