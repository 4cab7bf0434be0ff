"""The two-proportion statistics, against published and SciPy values."""

from __future__ import annotations

import pytest

from sessionpush.report.stats import (
    compare,
    newcombe_interval,
    two_sided_p,
    wilson_interval,
)

# Newcombe (1998), Table II, method 10, the worked examples: the interval
# of x1/n1 - x2/n2 to four decimals.
NEWCOMBE_TABLE_II = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "expected"), NEWCOMBE_TABLE_II)
def test_the_difference_interval_matches_newcombes_table(
    counts: tuple[int, int, int, int], expected: tuple[float, float]
) -> None:
    low, high = newcombe_interval(*counts)
    assert (round(low, 4), round(high, 4)) == expected


# scipy.stats.binomtest(x, n).proportion_ci(method="wilson"), SciPy 1.17.1.
SCIPY_WILSON = [
    ((0, 12), (0.0, 0.24249400665524085)),
    ((12, 12), (0.7575059933447592, 1.0)),
    ((1, 3), (0.06149194472039626, 0.7923403991979523)),
    ((3, 20), (0.05236874589621662, 0.3604188647407569)),
    ((57, 1000), (0.04425344035871594, 0.07313706765948591)),
]


@pytest.mark.parametrize(("counts", "expected"), SCIPY_WILSON)
def test_the_wilson_interval_matches_scipy(
    counts: tuple[int, int], expected: tuple[float, float]
) -> None:
    assert wilson_interval(*counts) == pytest.approx(expected, abs=1e-12)


# scipy.stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]],
# correction=False).pvalue, SciPy 1.17.1: the pooled z test's p-value.
SCIPY_P = [
    ((30, 200, 18, 210), 0.04299622577082111),
    ((9, 10, 3, 10), 0.0061698993205441645),
]


@pytest.mark.parametrize(("counts", "expected"), SCIPY_P)
def test_the_p_value_matches_scipys_chi_squared_test(
    counts: tuple[int, int, int, int], expected: float
) -> None:
    assert two_sided_p(*counts) == pytest.approx(expected, rel=1e-12)


def test_a_p_value_by_hand() -> None:
    """4/10 vs 2/10: pooled 0.3, se sqrt(0.3 * 0.7 * 0.2) = 0.2049, z =
    0.2 / 0.2049 = 0.9759, two-sided p = 0.3291."""
    assert round(two_sided_p(4, 10, 2, 10), 4) == 0.3291


def test_groups_that_never_convert_show_no_evidence() -> None:
    assert two_sided_p(0, 50, 0, 5) == 1.0
    assert two_sided_p(7, 7, 3, 3) == 1.0


def test_a_comparison_has_absolute_and_relative_lift() -> None:
    c = compare("treated", 30, 200, 18, 210)
    assert c.treated_rate == 0.15
    assert c.holdout_rate == pytest.approx(18 / 210)
    assert c.lift == pytest.approx(0.15 - 18 / 210)
    assert c.relative_lift == pytest.approx((0.15 - 18 / 210) / (18 / 210))
    assert c.ci_low is not None and c.ci_high is not None
    assert c.ci_low < c.lift < c.ci_high
    # The interval excludes 0 exactly when p < 0.05 here (p = 0.043).
    assert c.ci_low > 0


def test_a_comparison_with_an_empty_group_has_no_statistics() -> None:
    c = compare("treated", 3, 40, 0, 0)
    assert c.treated_rate == 0.075
    assert (c.holdout_rate, c.lift, c.ci_low, c.p_value) == (None, None, None, None)


def test_a_holdout_that_never_converts_has_no_relative_lift() -> None:
    c = compare("treated", 4, 75, 0, 17)
    assert c.relative_lift is None
    assert c.lift == pytest.approx(4 / 75)


def test_counts_outside_their_range_are_refused() -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.3"):
        wilson_interval(4, 3)
    with pytest.raises(ValueError, match="positive"):
        wilson_interval(0, 0)
