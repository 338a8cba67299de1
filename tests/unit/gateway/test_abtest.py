"""The two-proportion z-test behind campaign A/B comparisons, against textbook values.

Pooled standard error for the test statistic, two-sided p-value from the standard normal, and
Newcombe's hybrid score interval (from two Wilson intervals) for the difference B - A.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.abtest import MIN_EXPECTED, MIN_SAMPLE, holm, two_proportion


def pearson_chi_square(x_a: int, n_a: int, x_b: int, n_b: int) -> float:
    """Pearson's X^2 of the 2x2 table (no continuity correction), from observed and expected counts."""
    table = [[x_a, n_a - x_a], [x_b, n_b - x_b]]
    total = n_a + n_b
    columns = [x_a + x_b, total - x_a - x_b]
    rows = [n_a, n_b]
    return sum(
        (table[r][c] - rows[r] * columns[c] / total) ** 2 / (rows[r] * columns[c] / total)
        for r in range(2)
        for c in range(2)
    )


def test_textbook_200_of_1000_against_250_of_1000() -> None:
    # p = 0.225 pooled; SE0 = sqrt(0.225 * 0.775 * 2/1000) = 0.0186748; z = 0.05 / SE0 = 2.6774
    # Wilson 95%: A (0.176377, 0.225919), B (0.224153, 0.277760); Newcombe's interval is
    # 0.05 - hypot(0.25 - 0.224153, 0.225919 - 0.2), 0.05 + hypot(0.277760 - 0.25, 0.2 - 0.176377)
    test = two_proportion(200, 1000, 250, 1000)
    assert (test.rate_a, test.rate_b) == (0.2, 0.25)
    assert test.difference == pytest.approx(0.05)
    assert test.z == pytest.approx(2.677, abs=5e-4)
    assert test.p_value == pytest.approx(0.0074, abs=5e-5)
    assert (test.ci_low, test.ci_high) == pytest.approx((0.013396, 0.086451), abs=5e-6)
    assert test.enough_data is True


def test_physicians_health_study_as_in_agresti() -> None:
    """Agresti, An Introduction to Categorical Data Analysis, the Physicians' Health Study:
    myocardial infarction in 189 of 11,034 on placebo and 104 of 11,037 on aspirin. The book gives
    a difference of proportions of 0.0077 with 95% CI (0.005, 0.011) and Pearson X^2 = 25.01."""
    test = two_proportion(104, 11_037, 189, 11_034)  # A aspirin, B placebo: difference placebo - aspirin
    assert test.difference == pytest.approx(0.0077, abs=5e-5)
    assert (round(test.ci_low, 3), round(test.ci_high, 3)) == (0.005, 0.011)
    assert test.z is not None
    assert test.z**2 == pytest.approx(25.01, abs=0.01)
    assert test.p_value is not None
    assert test.p_value < 1e-6
    assert test.enough_data is True


@pytest.mark.parametrize(
    ("x_a", "n_a", "x_b", "n_b"),
    [
        (200, 1000, 250, 1000),
        (28, 254, 36, 301),
        (168, 300, 96, 200),
        (5, 40, 20, 40),
        (104, 11_037, 189, 11_034),
    ],
)
def test_z_squared_is_pearsons_chi_square(x_a: int, n_a: int, x_b: int, n_b: int) -> None:
    test = two_proportion(x_a, n_a, x_b, n_b)
    assert test.z is not None
    assert test.z**2 == pytest.approx(pearson_chi_square(x_a, n_a, x_b, n_b), rel=1e-9)
    assert test.p_value == pytest.approx(math.erfc(abs(test.z) / math.sqrt(2)), rel=1e-9)


def test_swapping_the_groups_mirrors_the_answer() -> None:
    ab, ba = two_proportion(28, 254, 36, 301), two_proportion(36, 301, 28, 254)
    assert ab.z is not None
    assert ba.z is not None
    assert ba.z == pytest.approx(-ab.z)
    assert ab.difference is not None
    assert ba.difference == pytest.approx(-ab.difference)
    assert (ba.ci_low, ba.ci_high) == pytest.approx((-ab.ci_high, -ab.ci_low))
    assert ba.p_value == pytest.approx(ab.p_value)


@pytest.mark.parametrize(
    ("x_1", "n_1", "x_2", "n_2", "expected"),
    [
        (56, 70, 48, 80, (0.0524, 0.3339)),
        (9, 10, 3, 10, (0.1705, 0.8090)),
        (6, 7, 2, 7, (0.0582, 0.8062)),
        (5, 56, 0, 29, (-0.0381, 0.1926)),
        (0, 10, 0, 20, (-0.1611, 0.2775)),
        (0, 10, 0, 10, (-0.2775, 0.2775)),
        (10, 10, 0, 20, (0.6791, 1.0)),
        (10, 10, 0, 10, (0.6075, 1.0)),
    ],
)
def test_newcombes_worked_examples(
    x_1: int, n_1: int, x_2: int, n_2: int, expected: tuple[float, float]
) -> None:
    """Newcombe, Interval estimation for the difference between independent proportions
    (Statistics in Medicine 17, 1998), table II, method 10, for p1 - p2 (B - A here)."""
    test = two_proportion(x_2, n_2, x_1, n_1)
    assert (test.ci_low, test.ci_high) == pytest.approx(expected, abs=5e-5)


def test_enough_data_needs_30_trials_and_5_successes_and_failures_expected_each() -> None:
    """Expected where the rates are equal (the pooled rate), the normal approximation's condition."""
    assert (MIN_SAMPLE, MIN_EXPECTED) == (30, 5)
    assert two_proportion(5, 30, 25, 30).enough_data is True
    assert two_proportion(5, 29, 25, 30).enough_data is False  # too few trials
    assert two_proportion(0, 30, 10, 30).enough_data is True  # 5 expected each side
    assert two_proportion(0, 30, 9, 30).enough_data is False  # 4.5 expected
    assert two_proportion(30, 30, 20, 30).enough_data is True  # 5 failures expected
    assert two_proportion(30, 30, 21, 30).enough_data is False
    # 10 events in 2,000 deliveries: 5 expected in each 1,000, exactly (counted in integers).
    assert two_proportion(0, 1000, 10, 1000).enough_data is True
    assert two_proportion(0, 1000, 9, 1000).enough_data is False
    small = two_proportion(2, 4, 3, 4)
    assert small.enough_data is False
    assert small.z == pytest.approx(0.730297, abs=1e-6)  # still computed, but not to be trusted


def test_a_clear_difference_in_a_rare_rate_is_tested() -> None:
    """4 complaints in 10,000 against 60 in 10,000: required of the counts seen (5 each), the
    test called it "too small to tell" beside its own p of 2e-12."""
    rare = two_proportion(4, 10_000, 60, 10_000)
    assert rare.enough_data is True
    assert rare.p_value is not None
    assert rare.p_value < 1e-10
    assert rare.ci_low > 0


def test_holm_adjusts_each_p_value_by_its_rank_and_keeps_their_order() -> None:
    assert holm([]) == []
    assert holm([0.03]) == [0.03]
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001, 0.2]) == pytest.approx([0.5, 0.003, 0.4])
    assert holm([0.6, 0.7]) == [1.0, 1.0]


def test_nothing_to_compare_gives_no_statistic() -> None:
    empty = two_proportion(0, 0, 3, 10)
    assert (empty.z, empty.p_value, empty.enough_data) == (None, None, False)
    assert (empty.rate_a, empty.rate_b, empty.difference) == (None, 0.3, None)  # no rate of nothing
    assert (empty.ci_low, empty.ci_high) == (-1.0, 1.0)
    flat = two_proportion(0, 100, 0, 100)
    assert (flat.z, flat.p_value, flat.enough_data, flat.difference) == (None, None, False, 0.0)
    everyone = two_proportion(50, 50, 80, 80)
    assert (everyone.z, everyone.p_value) == (None, None)


def test_a_huge_difference_has_a_tiny_but_positive_p_value() -> None:
    test = two_proportion(100, 1000, 500, 1000)  # z = 19.5
    assert test.p_value is not None
    assert test.z is not None
    assert test.p_value > 0
    assert test.p_value == pytest.approx(math.erfc(test.z / math.sqrt(2)), rel=1e-6)


def test_small_counts_keep_the_interval_within_minus_one_to_one() -> None:
    # 1 of 3 against 2 of 3: the normal approximation gave [-0.421057, 1.087724]. Wilson 95%:
    # 1/3 (0.061492, 0.792340), 2/3 (0.207660, 0.938508).
    test = two_proportion(1, 3, 2, 3)
    assert (test.ci_low, test.ci_high) == pytest.approx((-0.315801, 0.717775), abs=1e-6)
    mirrored = two_proportion(2, 3, 1, 3)
    assert (mirrored.ci_low, mirrored.ci_high) == pytest.approx((-0.717775, 0.315801), abs=1e-6)


@pytest.mark.parametrize(
    ("x_a", "n_a", "x_b", "n_b", "expected"),
    [
        (0, 2, 1, 2, (-0.272573, 0.905469)),  # 0 of n
        (2, 2, 1, 2, (-0.905469, 0.272573)),  # n of n, the same mirrored
        (0, 1, 1, 1, (-0.122109, 1.0)),  # 0 of n against n of n
        (0, 10, 0, 10, (-0.277533, 0.277533)),  # Wald's was the point 0
        (10, 10, 10, 10, (-0.277533, 0.277533)),
        (0, 0, 3, 10, (-1.0, 1.0)),  # zero deliveries: nothing known
        (0, 0, 0, 0, (-1.0, 1.0)),
    ],
)
def test_edge_counts_give_an_interval_within_minus_one_to_one(
    x_a: int, n_a: int, x_b: int, n_b: int, expected: tuple[float, float]
) -> None:
    test = two_proportion(x_a, n_a, x_b, n_b)
    assert (test.ci_low, test.ci_high) == pytest.approx(expected, abs=1e-6)
    assert -1.0 <= test.ci_low <= (test.difference or 0.0) <= test.ci_high <= 1.0


@given(
    st.integers(0, 60).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
    st.integers(0, 60).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
)
def test_the_interval_holds_the_difference_and_stays_within_minus_one_to_one(
    a: tuple[int, int], b: tuple[int, int]
) -> None:
    test = two_proportion(*a, *b)
    if test.difference is None:  # no trials on a side
        assert (test.ci_low, test.ci_high) == (-1.0, 1.0)
    else:
        assert -1.0 <= test.ci_low <= test.difference <= test.ci_high <= 1.0


@pytest.mark.parametrize(("x_a", "n_a", "x_b", "n_b"), [(3, 2, 0, 1), (0, 1, -1, 1), (1, 0, 0, 1)])
def test_more_successes_than_trials_is_a_caller_bug(x_a: int, n_a: int, x_b: int, n_b: int) -> None:
    with pytest.raises(ValueError, match="between 0 and the number of trials"):
        two_proportion(x_a, n_a, x_b, n_b)
