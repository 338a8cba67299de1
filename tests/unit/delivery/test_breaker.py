from __future__ import annotations

import pytest

from clients.delivery import BreakerState, CircuitBreaker, DeliveryResult, is_provider_failure
from clients.delivery.base import LONGEST_SEND_SECONDS


def state(breaker: CircuitBreaker) -> BreakerState:
    """The state read afresh: mypy narrows `breaker.state` after an assert and would call the next
    comparison (after a `record` or `allow` changed it) impossible."""
    return breaker.state


def test_opens_after_threshold_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10.0)
    for _ in range(2):
        breaker.record(False, now=0.0)
    breaker.record(True, now=0.0)  # a success resets the count
    for _ in range(2):
        breaker.record(False, now=0.0)
    assert state(breaker) == "closed"
    assert breaker.allow(0.0)
    breaker.record(False, now=1.0)
    assert state(breaker) == "open"
    assert not breaker.allow(10.9)


def test_half_open_lets_exactly_one_probe_and_success_closes() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10.0)
    breaker.record(False, now=100.0)
    assert breaker.allow(110.0)
    assert state(breaker) == "half_open"
    assert not breaker.allow(110.0)
    assert not breaker.allow(200.0)
    breaker.record(True, now=111.0)
    assert state(breaker) == "closed"
    assert breaker.allow(111.0)
    assert breaker.allow(111.0)


def test_failed_probe_reopens_for_a_full_cooldown() -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown=10.0)
    breaker.record(False, now=0.0)
    breaker.record(False, now=0.0)
    assert breaker.allow(10.0)
    breaker.record(False, now=12.0)
    assert state(breaker) == "open"
    assert not breaker.allow(21.9)
    assert breaker.allow(22.0)
    assert state(breaker) == "half_open"


def test_a_clock_stepped_back_ends_the_cool_down_rather_than_stretching_it() -> None:
    """The worker's clock is the wall clock: stepped back three hours after the circuit opened,
    it kept every push to that provider waiting three hours, and short-lived ones expired."""
    breaker = CircuitBreaker(failure_threshold=1, cooldown=30.0)
    breaker.record(False, now=36_000.0)
    assert (breaker.allow(36_010.0), breaker.reopens_in(36_010.0)) == (False, 20.0)
    stepped_back = 36_000.0 - 3 * 3600
    assert breaker.reopens_in(stepped_back) == 0.0
    assert breaker.allow(stepped_back)  # the probe
    assert state(breaker) == "half_open"


def test_late_results_while_open_are_ignored() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10.0)
    breaker.record(False, now=0.0)
    breaker.record(True, now=1.0)
    assert state(breaker) == "open"
    assert not breaker.allow(5.0)


def test_reopened_breaker_needs_threshold_failures_again_after_closing() -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown=1.0)
    breaker.record(False, now=0.0)
    breaker.record(False, now=0.0)
    assert breaker.allow(1.0)
    breaker.record(True, now=1.0)
    breaker.record(False, now=2.0)
    assert state(breaker) == "closed"


@pytest.mark.parametrize(
    ("status", "counts"),
    [("retry", True), ("delivered", False), ("invalid_token", False), ("failed", False)],
)
def test_only_transient_results_count_against_the_provider(status: str, counts: bool) -> None:
    assert is_provider_failure(DeliveryResult(status=status)) is counts  # type: ignore[arg-type]


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (1, -1.0)])
def test_rejects_nonsense_settings(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=threshold, cooldown=cooldown)


def test_a_released_probe_leaves_the_state_and_goes_to_the_next_send() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10.0)
    breaker.record(False, now=0.0)
    assert breaker.allow(10.0)
    breaker.release()  # that send did not reach the provider
    assert state(breaker) == "half_open"
    assert breaker.allow(10.0)
    assert not breaker.allow(10.0)
    closed = CircuitBreaker(failure_threshold=2, cooldown=10.0)
    closed.record(False, now=0.0)
    closed.release()  # nor resets the count of failures
    closed.record(False, now=1.0)
    assert state(closed) == "open"


def test_one_devices_pushes_throttled_is_no_failure_of_the_provider() -> None:
    """APNs' 429 `TooManyRequests` is about one device token: five pushes to one busy phone
    opened the circuit and held back every other device's pushes."""
    throttled = DeliveryResult(status="retry", provider_status=429, device_throttled=True)
    assert not is_provider_failure(throttled)
    assert is_provider_failure(DeliveryResult(status="retry", provider_status=429))


def test_while_its_probe_is_out_the_circuit_reopens_when_the_probe_must_have_ended() -> None:
    """Not at once: the pushes held back were claimed and decided again every second or so for
    as long as the probe took."""
    breaker = CircuitBreaker(failure_threshold=1, cooldown=30.0)
    breaker.record(False, now=100.0)
    assert breaker.reopens_in(110.0) == 20.0
    assert breaker.allow(130.0)  # the probe
    assert not breaker.allow(131.0)
    assert breaker.reopens_in(131.0) == LONGEST_SEND_SECONDS - 1
    breaker.record(True, now=132.0)
    assert breaker.allow(132.0)


def test_a_clock_stepped_back_during_a_probe_holds_nothing_longer_than_a_send() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=30.0)
    breaker.record(False, now=100.0)
    assert breaker.allow(130.0)  # the probe
    assert breaker.reopens_in(130.0 - 3600) == LONGEST_SEND_SECONDS


def test_a_retry_after_keeps_the_circuit_open_at_least_that_long_within_an_hour() -> None:
    """FCM asks a minute at least after QUOTA_EXCEEDED: a probe at the 30 s cool-down was refused
    and opened the circuit again."""
    breaker = CircuitBreaker(failure_threshold=1, cooldown=30.0)
    breaker.record(False, now=100.0, retry_after=60.0)
    assert not breaker.allow(131.0)
    assert breaker.reopens_in(131.0) == 29.0
    assert breaker.allow(160.0)
    breaker.record(False, now=161.0, retry_after=86_400.0)  # a proxy's "tomorrow"
    assert not breaker.allow(161.0 + 3599.0)
    assert breaker.allow(161.0 + 3600.0)
    breaker.record(False, now=4000.0, retry_after=5.0)  # shorter than the cool-down: the cool-down
    assert not breaker.allow(4029.0)
