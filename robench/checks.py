"""Value rules every command shares: seeds, counts and finite numbers, with one wording everywhere.

One valid seed range for every command (0..2^63-1, what torch and numpy take), counts bounded by
int64, and floats that must be finite: each rule raises a :class:`RobenchError` naming the option.
"""

from __future__ import annotations

import math

from robench.errors import RobenchError

INT_MAX = 2**63 - 1
"""The largest count or seed robench takes (int64, what torch and numpy can hold)."""
SEED_RANGE = (0, INT_MAX)
"""Every command's valid seeds, inclusive."""
SEED_RULE = "must be an integer in 0..2^63-1"


def is_seed(value: object) -> bool:
    """Whether ``value`` is a valid seed: an int (not a bool) in :data:`SEED_RANGE`."""
    return isinstance(value, int) and not isinstance(value, bool) and SEED_RANGE[0] <= value <= SEED_RANGE[1]


def check_seed(seed: object, flag: str = "--seed") -> int:
    """``seed`` if :func:`is_seed`, else a :class:`RobenchError` naming ``flag`` and the valid range."""
    if not is_seed(seed):
        raise RobenchError(f"{flag} {SEED_RULE}, got {seed!r}")
    return seed


def check_count(value: object, flag: str, minimum: int = 1, why: str = "") -> int:
    """``value`` if it is an int (not a bool) in ``minimum``..2^63-1, else a :class:`RobenchError` naming ``flag``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RobenchError(f"{flag} must be an integer, got {value!r}")
    if value < minimum:
        raise RobenchError(f"{flag} must be at least {minimum}{why}, got {value}")
    if value > INT_MAX:
        raise RobenchError(f"{flag} must be at most 2^63-1, got {value}")
    return value


def is_number(value: object) -> bool:
    """An int or float (not a bool) that is finite as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond float's range
        return False
