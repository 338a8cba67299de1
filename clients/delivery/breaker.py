"""A circuit breaker per provider, so an outage costs one probe per cool-down, not every push.

closed --(threshold consecutive failures)--> open --(cool-down elapsed, next allow)--> half_open
half_open --(probe succeeds)--> closed;  half_open --(probe fails)--> open (cool-down restarts)

Only failures of the provider count (retry results: 5xx, 429, timeouts, connection errors). An
invalid token, a rejected payload or one device's pushes throttled is the provider working
correctly, so it counts as success.
A pure state machine: the caller passes `now`, so the worker and the tests own the clock.
"""

from __future__ import annotations

from typing import Literal

from clients.delivery.base import LONGEST_SEND_SECONDS, DeliveryResult

__all__ = ["BreakerState", "CircuitBreaker", "is_provider_failure"]

BreakerState = Literal["closed", "open", "half_open"]
LONGEST_COOLDOWN = 3600.0
"""The longest a Retry-After may keep a circuit open: what `CGW_DELIVERY_BREAKER_COOLDOWN_SECONDS`
allows at most. A proxy's "come back tomorrow" must not stop a provider's pushes for a day."""


def is_provider_failure(result: DeliveryResult) -> bool:
    """The outcome the breaker should record as a failure."""
    return result.status == "retry" and not result.device_throttled


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive failures; one probe after `cooldown` seconds."""

    def __init__(self, failure_threshold: int, cooldown: float) -> None:
        if failure_threshold < 1 or cooldown < 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown >= 0")
        self._threshold = failure_threshold
        self._cooldown = cooldown
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._open_for = cooldown
        self._probe_out = False
        self._probe_started = 0.0

    @property
    def state(self) -> BreakerState:
        """The state as of the last `allow` or `record`; open turns half_open only in `allow`."""
        return self._state

    def reopens_in(self, now: float) -> float:
        """Seconds until an open circuit lets its next probe through or, while that probe is out,
        until it must have ended (a send takes at most `LONGEST_SEND_SECONDS`): the pushes it held
        back were claimed, opened and decided again every second or so while it ran. At most that
        long, whatever the clock did meanwhile: stepped back an hour during a probe, it held them
        an hour. Meaningless while closed."""
        if self._state == "half_open" and self._probe_out:
            return min(max(self._probe_started + LONGEST_SEND_SECONDS - now, 0.0), LONGEST_SEND_SECONDS)
        return 0.0 if self._cooled(now) else self._opened_at + self._open_for - now

    def allow(self, now: float) -> bool:
        """May a send start now? In half_open exactly one caller gets True until it records."""
        if self._state == "closed":
            return True
        if self._state == "open":
            if not self._cooled(now):
                return False
            self._state = "half_open"
            self._probe_out = False
        if self._probe_out:
            return False
        self._probe_out = True
        self._probe_started = now
        return True

    def record(self, success: bool, now: float, retry_after: float | None = None) -> None:
        """Feed back a finished send. Results arriving while open are late and ignored. A failure
        that opens the circuit with a Retry-After keeps it open at least that long (up to
        `LONGEST_COOLDOWN`): FCM asks a minute at least after QUOTA_EXCEEDED, and a probe at the
        30 s cool-down was refused and opened it again."""
        if self._state == "open":
            return
        if success:
            self._state = "closed"
            self._failures = 0
        elif self._state == "half_open":
            self._trip(now, retry_after)
        else:
            self._failures += 1
            if self._failures >= self._threshold:
                self._trip(now, retry_after)
        self._probe_out = False

    def release(self) -> None:
        """A send `allow`ed that did not reach the provider: its answer says nothing of it, so
        the state stays, and in half_open the probe is the next send's to make."""
        self._probe_out = False

    def _cooled(self, now: float) -> bool:
        """The cool-down is over; so it is when `now` is before the circuit opened: the clock
        stepped back, and waiting for it to come round again could take hours."""
        return not self._opened_at <= now < self._opened_at + self._open_for

    def _trip(self, now: float, retry_after: float | None) -> None:
        self._state = "open"
        self._opened_at = now
        self._open_for = max(self._cooldown, min(retry_after or 0.0, LONGEST_COOLDOWN))
        self._failures = 0
