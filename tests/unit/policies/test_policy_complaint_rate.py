"""The complaint-rate rule's threshold, compared exactly: a rate reached to the complaint pauses,
whatever binary float the rate's decimal becomes. Table-driven, pure (no clock, no storage)."""

from typing import NamedTuple

import pytest

from policies.complaints import should_pause_campaign
from policies.settings import PolicySettings


class Case(NamedTuple):
    rate: float
    min_deliveries: int
    deliveries: int
    complaints: int
    pauses: bool


CASES = [
    # Exactly at the rate, where the float product lands just above the integer: once missed.
    Case(0.035, 200, 200, 7, True),
    Case(0.017, 200, 3000, 51, True),
    Case(0.28, 2, 25, 7, True),
    Case(0.07, 2, 100, 7, True),
    Case(0.56, 2, 175, 98, True),
    # One complaint short of those is under the rate.
    Case(0.035, 200, 200, 6, False),
    Case(0.017, 200, 3000, 50, False),
    Case(0.28, 2, 25, 6, False),
    # The spec's defaults: 0.5% after at least 200 deliveries.
    Case(0.005, 200, 200, 1, True),
    Case(0.005, 200, 201, 1, False),
    Case(0.005, 200, 400, 2, True),
    Case(0.005, 200, 199, 199, False),  # under the minimum, whatever the complaints
    # Where the float product lands just below the integer (0.58 * 50 is 28.999999999999996).
    Case(0.58, 2, 50, 29, True),
    Case(0.58, 2, 50, 28, False),
    Case(1.0, 1, 5, 5, True),
    Case(1.0, 1, 5, 4, False),
    Case(1e-7, 1, 10_000_000, 1, True),
    Case(1e-7, 1, 10_000_001, 1, False),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.complaints}/{c.deliveries}@{c.rate}" for c in CASES])
def test_complaints_reaching_the_rate_pause_the_campaign(case: Case) -> None:
    settings = PolicySettings(
        complaint_pause_rate=case.rate, complaint_pause_min_deliveries=case.min_deliveries
    )
    assert should_pause_campaign(case.complaints, case.deliveries, settings) is case.pauses
