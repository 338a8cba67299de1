"""When the SDK tries a request again, written once for the sync and the async client.

Retrying is safe only where a second copy of the request cannot do a second thing:

- `idempotent` calls (pushes and batches, whose idempotency key makes the gateway answer a
  repeat with the first decision; reads; pause and resume, which answer a campaign already in
  that state as it is) are retried on any failure to get an answer (refused, reset, timed
  out, cut mid-answer) and on 502/503/504: the gateway's 503 means storage is full, busy or
  failed, or the server is deciding as many batches as it takes at once, and the write was not
  kept (or, after a failed disk sync, may not have been: a repeat is answered with the first
  decision if it was), and a proxy in front of it says 502/504 for the same "try later".
- `unsent_only` calls (creating a campaign, a complaint step) would happen twice, so they are
  retried only when the request provably never left: the connection was refused or timed out,
  or no pooled connection came free.

No 4xx is ever retried: the same request gets the same refusal. Backoff is exponential with
full jitter (a uniform draw in [0, step]), so many services failing together do not come back
together: `clients.retry_after.backoff_delay`, the delivery workers' too. Attempts and total
time are both bounded.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Literal

import httpx
import msgspec

from clients.retry_after import backoff_delay, parse_retry_after

__all__ = ["DEFAULT_RETRY", "Attempts", "RetryPolicy", "Safety"]

Safety = Literal["idempotent", "unsent_only"]

_RETRIED_STATUSES = frozenset({502, 503, 504})
_NO_ANSWER = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """`attempts` counts the first try (1 turns retrying off). No retry starts later than
    `deadline` seconds after the first try began; a try already under way may run its own
    timeout past it."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    deadline: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts: at least 1 (the first try)")
        for name in ("base_delay", "max_delay", "deadline"):
            # NaN passes every comparison: it failed in `time.sleep` after the first try was sent.
            value = getattr(self, name)
            if math.isnan(value) or value < 0:
                raise ValueError(f"{name}: a number of seconds, not negative")
        if math.isinf(self.base_delay):
            raise ValueError("base_delay: a finite number of seconds")

    def start(self, safety: Safety) -> Attempts:
        return Attempts(self, safety, time.monotonic, random.random)


class Attempts:
    """The retry state of one call: ask it after each failed try how long to wait, if at all."""

    def __init__(
        self,
        policy: RetryPolicy,
        safety: Safety,
        clock: Callable[[], float],
        rand: Callable[[], float],
    ) -> None:
        self._policy = policy
        self._safety = safety
        self._clock = clock
        self._rand = rand
        self._started = clock()
        self.made = 1

    def gave_up(self, error: httpx.TransportError) -> str:
        """Why the call ended, saying so when it may have been carried out: the caller then has
        to look before trying again."""
        said = f"no answer from the gateway after {self.made} attempt(s): {type(error).__name__}: {error}"
        if self._safety == "unsent_only" and not isinstance(error, _NEVER_SENT):
            said += "; the request may have reached it, so it was not repeated"
        return said

    def after_error(self, error: httpx.TransportError) -> float | None:
        """Seconds to wait before the next try, or None to give up."""
        retried = _NEVER_SENT if self._safety == "unsent_only" else _NO_ANSWER
        return self._next_delay() if isinstance(error, retried) else None

    def after_status(self, status_code: int, retry_after: str | None = None) -> float | None:
        """Seconds to wait before the next try, or None to give up (or, for success, to stop).
        The answer's Retry-After (the gateway sends one when another process held its storage's
        write lock) is a floor under the backoff; one that would end past the deadline gives up."""
        if self._safety == "unsent_only" or status_code not in _RETRIED_STATUSES:
            return None
        return self._next_delay(parse_retry_after(retry_after, time.time()))

    def _next_delay(self, floor: float | None = None) -> float | None:
        policy = self._policy
        if self.made >= policy.attempts:
            return None
        left = policy.deadline - (self._clock() - self._started)
        delay = backoff_delay(self.made, policy.base_delay, policy.max_delay, self._rand, floor, left)
        if delay > left:
            return None
        self.made += 1
        return delay


DEFAULT_RETRY = RetryPolicy()
