"""95 % intervals for the accuracies a report shows: Wilson score intervals on n_correct / n
(:func:`robench.proportions.wilson`).

An accuracy measured on n images is a binomial proportion; its 95 % Wilson score interval
(Wilson 1927; recommended over the normal approximation by Brown, Cai and DasGupta 2001, "Interval
estimation for a binomial proportion") stays inside [0, 1] and is sensible at 0 % and 100 %, where
the normal ("±") interval collapses. Over several seeds a report shows the mean with the min-max
over seeds, and the Wilson interval of the *pooled* count (the seeds' n_correct and n summed): it
describes the images' sampling noise, the min-max the seeds' spread. Tables write an interval as
``87.42 [86.8, 88.1]`` (the point estimate to two decimals as the paper's Table I, the bounds to one).
"""

from __future__ import annotations

import math

from robench.proportions import noise_points, wilson

def wilson_pct(k, n) -> tuple:
    """:func:`wilson` in % (the unit of every table and figure)."""
    low, high = wilson(k, n)
    return 100.0 * low, 100.0 * high


def count_of(accuracy: float | None, n) -> float | None:
    """The number of correct images behind an accuracy (a fraction) on ``n`` images; None if either is unknown."""
    if accuracy is None or n in (None, "") or (isinstance(accuracy, float) and math.isnan(accuracy)):
        return None
    return float(round(float(accuracy) * int(n)))


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def interval_text(value, low, high, digits: int = 2) -> str:
    """``87.42 [86.8, 88.1]``; ``87.42`` without an interval; ``–`` without a value."""
    if is_missing(value):
        return "–"
    text = f"{value:.{digits}f}"
    if is_missing(low) or is_missing(high):
        return text
    return f"{text} [{low:.1f}, {high:.1f}]"


def small_sample_warning(n: int) -> str | None:
    """A visible warning when ``n`` ≤ 100 images, where one image moves an accuracy by ≥ 1 point."""
    if n is None or n > 100:
        return None
    return (f"⚠ n = {n}: one image is {100.0 / n:.1f} point{'s' if n != 100 else ''} of accuracy, and differences "
            f"below ≈ {noise_points(n):.1f} points are within noise.")


def noise_note(n: int) -> str:
    """One line on what is within noise at ``n`` images."""
    return (f"Differences below ≈ {noise_points(n):.1f} pts are within noise at n = {n} (the widest 95 % Wilson "
            "half-width, at 50 % accuracy).")


def intervals_overlap(a: tuple, b: tuple) -> bool:
    """Whether two (low, high) intervals overlap (False when either is unknown)."""
    if any(is_missing(v) for v in (*a, *b)):
        return False
    return a[0] <= b[1] and b[0] <= a[1]
