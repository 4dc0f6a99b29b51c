"""Summary statistics the results use, with no third-party dependency."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean(xs: Sequence[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def percentile(xs: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks
    (numpy's default), or None for no data."""
    if not xs:
        return None
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def jain(xs: Sequence[float]) -> float | None:
    """Jain's fairness index (sum x)^2 / (n * sum x^2): 1 when all equal, 1/n when one flow
    takes everything (Jain, Chiu and Hawe 1984)."""
    if not xs:
        return None
    sq = math.fsum(x * x for x in xs)
    if sq == 0:
        return 1.0
    return math.fsum(xs) ** 2 / (len(xs) * sq)


def rounded(x: float | None, digits: int = 9) -> float | None:
    """Round for results files: stable text, no spurious 17th digit."""
    if x is None:
        return None
    return float(round(x, digits))
