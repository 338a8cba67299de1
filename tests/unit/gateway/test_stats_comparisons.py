"""The A/B comparisons of a campaign's variants, from their counts (no storage)."""

from __future__ import annotations

import pytest

from gateway.schemas.stats import VariantStats
from gateway.services.stats import _comparisons


def clicks(delivered: int, clicked: int) -> VariantStats:
    return VariantStats(delivered=delivered, clicked=clicked)


def test_each_more_variant_is_one_more_chance_of_a_false_difference() -> None:
    """131 clicks in 1,000 against the control's 100: p = 0.030, significant alone. Beside a
    second variant no different from the control, two comparisons are made and Holm's adjustment
    doubles it (five variants of equal rates were called different one time in six)."""
    (alone,) = _comparisons("click_through_rate", {"A": clicks(1000, 100), "B": clicks(1000, 131)}, "A")
    assert alone.p_value == pytest.approx(0.0301, abs=1e-4)
    assert (alone.p_value_adjusted, alone.significant) == (alone.p_value, True)

    two = {"A": clicks(1000, 100), "B": clicks(1000, 131), "C": clicks(1000, 100)}
    b, c = _comparisons("click_through_rate", two, "A")
    assert (b.variant, c.variant) == ("B", "C")
    assert b.p_value == alone.p_value
    assert alone.p_value is not None
    assert b.p_value_adjusted == pytest.approx(2 * alone.p_value)
    assert (b.significant, c.significant, c.p_value_adjusted) == (False, False, 1.0)
    assert b.verdict == (
        "no significant difference in click_through_rate between B and A once adjusted for 2 "
        "comparisons: +3.10 percentage points (95% CI +0.30 to +5.91, p = 0.0301, 0.0602 adjusted "
        "for 2 comparisons); alone it would be"
    )


def test_a_variant_the_test_does_not_hold_for_is_outside_the_family() -> None:
    variants = {"A": clicks(1000, 100), "B": clicks(1000, 131), "tiny": clicks(10, 5)}
    b, tiny = _comparisons("click_through_rate", variants, "A")
    assert (b.p_value_adjusted, b.significant) == (b.p_value, True)
    assert (tiny.p_value_adjusted, tiny.significant) == (None, False)
    assert tiny.verdict == (
        "sample too small to tell: each variant needs 30 deliveries or more "
        "(control 1000 deliveries, tiny 10)"
    )


def test_a_variant_with_no_delivery_has_no_rate_not_a_rate_of_zero() -> None:
    (none,) = _comparisons("click_through_rate", {"A": clicks(1000, 150), "B": clicks(0, 0)}, "A")
    assert (none.control_rate, none.variant_rate, none.difference) == (0.15, None, None)
    assert (none.z, none.p_value, none.p_value_adjusted, none.significant) == (None, None, None, False)
    assert none.verdict.startswith("sample too small to tell")


def test_rare_events_are_tested_at_volume() -> None:
    """4 complaints in 10,000 deliveries against 60: "sample too small" before, beside a p of 1e-12."""
    (rare,) = _comparisons(
        "complaint_rate", {"A": VariantStats(delivered=10_000, complaints=4),
                           "B": VariantStats(delivered=10_000, complaints=60)}, "A",
    )  # fmt: skip
    assert rare.significant is True
    assert rare.verdict.startswith(
        "B has a higher complaint_rate than A: +0.56 percentage points (95% CI +0."
    )
