"""Two-proportion statistics for holdout comparisons.

A rule's treated users convert at rate ``p1 = x1 / n1``, its held-out users
at ``p2 = x2 / n2``. The report shows the difference ``p1 - p2`` with a 95%
confidence interval and a two-sided p-value. The interval is Newcombe's
hybrid score interval (method 10 of R. G. Newcombe, "Interval estimation
for the difference between independent proportions: comparison of eleven
methods", Statistics in Medicine 17, 1998, 873-890): it combines the two
Wilson score intervals, stays inside [-1, 1] and, unlike the textbook Wald
interval, keeps close to its nominal coverage when a rate is near 0 or when
samples are small, which is where most session-triggered rules live.

The p-value is the pooled two-proportion z test (the same number as a
chi-squared test of the 2x2 table without continuity correction).
"""

from __future__ import annotations

import math

import msgspec

__all__ = [
    "Z95",
    "Comparison",
    "compare",
    "newcombe_interval",
    "two_sided_p",
    "wilson_interval",
]

#: The 97.5th percentile of the standard normal: a two-sided 95% interval.
Z95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of one proportion.

    Raises:
        ValueError: If ``trials`` is not positive or ``successes`` is
            outside ``0..trials``.
    """
    if trials <= 0:
        raise ValueError(f"trials must be positive, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be within 0..{trials}, got {successes}")
    p = successes / trials
    z2 = z * z
    centre = p + z2 / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    scale = 1 + z2 / trials
    low, high = (centre - spread) / scale, (centre + spread) / scale
    # At 0 and at n successes the bounds are exactly 0 and 1; rounding in
    # the formula would otherwise leave them a hair outside.
    return (0.0 if successes == 0 else low, 1.0 if successes == trials else high)


def newcombe_interval(
    x1: int, n1: int, x2: int, n2: int, z: float = Z95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval of ``x1/n1 - x2/n2``."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    diff = p1 - p2
    low = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return low, high


def two_sided_p(x1: int, n1: int, x2: int, n2: int) -> float:
    """The pooled two-proportion z test's two-sided p-value.

    When both groups convert never or always there is no variance to test
    against and no evidence of a difference: the p-value is 1.
    """
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return 1.0
    z = (x1 / n1 - x2 / n2) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    """One arm against the holdout.

    ``relative_lift`` is ``None`` when the holdout never converted (there is
    nothing to be relative to); every statistic is ``None`` when either
    group is empty.
    """

    arm: str
    treated: int
    treated_converted: int
    holdout: int
    holdout_converted: int
    treated_rate: float | None
    holdout_rate: float | None
    lift: float | None
    relative_lift: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None


def compare(arm: str, x1: int, n1: int, x2: int, n2: int) -> Comparison:
    """Rates, absolute and relative lift, 95% interval and p-value."""
    rate1 = x1 / n1 if n1 else None
    rate2 = x2 / n2 if n2 else None
    if rate1 is None or rate2 is None:
        return Comparison(
            arm=arm,
            treated=n1,
            treated_converted=x1,
            holdout=n2,
            holdout_converted=x2,
            treated_rate=rate1,
            holdout_rate=rate2,
            lift=None,
            relative_lift=None,
            ci_low=None,
            ci_high=None,
            p_value=None,
        )
    low, high = newcombe_interval(x1, n1, x2, n2)
    lift = rate1 - rate2
    return Comparison(
        arm=arm,
        treated=n1,
        treated_converted=x1,
        holdout=n2,
        holdout_converted=x2,
        treated_rate=rate1,
        holdout_rate=rate2,
        lift=lift,
        relative_lift=lift / rate2 if rate2 else None,
        ci_low=low,
        ci_high=high,
        p_value=two_sided_p(x1, n1, x2, n2),
    )
