"""Two-proportion z-test for A/B comparisons of campaign variants (pure arithmetic).

The test statistic uses the pooled proportion (the null hypothesis says the rates are equal).
The 95% confidence interval of the difference is Newcombe's hybrid score interval (Newcombe 1998,
method 10), built from each rate's Wilson interval: it stays within [-1, 1] and keeps a width
where a rate is 0 or 1, where the normal approximation (the Wald interval) left [-1, 1] at small
counts (1 of 3 against 2 of 3 gave [-0.421, 1.088]) or shrank to a point (0 of 10 against 0 of 10).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import msgspec

__all__ = ["MIN_EXPECTED", "MIN_SAMPLE", "TwoProportion", "holm", "two_proportion"]

MIN_SAMPLE = 30
MIN_EXPECTED = 5
"""The fewest successes, and failures, the test needs each side to expect where the rates are
equal (the pooled rate): the normal approximation's usual condition. Required of the counts
seen instead, it left rare rates untested at any volume: 4 complaints in 10,000 against 60 in
10,000 (p ~ 1e-12) was "too small to tell"."""
_CRITICAL = NormalDist().inv_cdf(0.975)
"""The standard normal's two-sided 95% point: the intervals are 95% ones (`ci95` on the wire)."""


class TwoProportion(msgspec.Struct, frozen=True):
    rate_a: float | None
    """None with no trials: a rate of nothing is not 0."""
    rate_b: float | None
    difference: float | None
    ci_low: float
    ci_high: float
    z: float | None
    p_value: float | None
    enough_data: bool


def two_proportion(x_a: int, n_a: int, x_b: int, n_b: int) -> TwoProportion:
    """Compare successes `x` out of trials `n` for A and B; the difference is B − A."""
    if not (0 <= x_a <= n_a and 0 <= x_b <= n_b):
        raise ValueError("successes must be between 0 and the number of trials")
    if not n_a or not n_b:
        rate_a = x_a / n_a if n_a else None
        rate_b = x_b / n_b if n_b else None
        return TwoProportion(rate_a, rate_b, None, -1.0, 1.0, None, None, False)
    rate_a, rate_b = x_a / n_a, x_b / n_b
    difference = rate_b - rate_a
    total, successes = n_a + n_b, x_a + x_b
    pooled = successes / total
    smaller = min(n_a, n_b)  # expects the fewest: n * pooled, in integers so that 5 is exactly 5
    enough = smaller >= MIN_SAMPLE and smaller * min(successes, total - successes) >= MIN_EXPECTED * total
    low_a, high_a = _wilson(x_a, n_a, _CRITICAL)
    low_b, high_b = _wilson(x_b, n_b, _CRITICAL)
    low = max(-1.0, difference - math.hypot(rate_b - low_b, high_a - rate_a))
    high = min(1.0, difference + math.hypot(high_b - rate_b, rate_a - low_a))
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return TwoProportion(rate_a, rate_b, difference, low, high, None, None, enough)
    z = difference / se
    p_value = math.erfc(abs(z) / math.sqrt(2))  # two-sided; 2 * (1 - cdf(|z|)) cancels to 0 for large |z|
    return TwoProportion(rate_a, rate_b, difference, low, high, z, p_value, enough)


def _wilson(successes: int, trials: int, critical: float) -> tuple[float, float]:
    """Wilson's score interval for one rate (Newcombe 1998, method 3)."""
    square = critical * critical
    centre = (successes + square / 2) / (trials + square)
    half = critical / (trials + square) * math.sqrt(successes * (trials - successes) / trials + square / 4)
    return max(0.0, centre - half), min(1.0, centre + half)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of p-values tested together, in their order: each variant
    against the control is one more chance of a false "significant" (five variants of equal
    rates were called different one time in six at 0.05). The smallest is multiplied by their
    number, the next by one less, each at least the one before, at most 1."""
    count = len(p_values)
    adjusted = [0.0] * count
    running = 0.0
    for rank, index in enumerate(sorted(range(count), key=p_values.__getitem__)):
        running = max(running, min(1.0, (count - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
