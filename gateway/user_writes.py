"""How many changes one user may make through the preference center: a token bucket per user.

Each change a user makes is kept, some for good: a consent change is a ledger event that erasure
leaves (sealed) in place, a complaint keeps its text, a device registration its row. A user token
in a script's hands (the user's own, or a stolen one) made 2,000 complaints in 3 s, 11 MB of the
data file, and nothing said no. Each user gets `per_hour` changes an hour, in bursts of up to a
tenth of that; one over is refused 429 with the seconds until the next is allowed, and writes
nothing. Far above what a person does in a preference center, and an app registering its device
at every start.

Not counted: erasure, which must never be refused for being the user's hundredth request, and
push events (`opened`, ...), which the app sends by itself, one per push and kind at most.

The buckets live in the process (one `serve` of several lets each user its own `per_hour`), on
the event loop (so no lock), keyed by the subject_ref, for the `MOST_USERS` users seen last; a
user forgotten there starts again with a full bucket.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from gateway.clock import Clock
from gateway.errors import TooManyRequests

__all__ = ["MOST_USERS", "UserWrites"]

MOST_USERS = 100_000  # ~300 bytes each with its ref: ~30 MiB at most
# A change's worth less this is a whole one: the refill's float sums land a hair under 1 after
# exactly `Retry-After` seconds (27 an hour, 133 s: 0.9999999999999999).
_ROUNDING = 1e-9


class UserWrites:
    def __init__(self, per_hour: int, clock: Clock, most_users: int = MOST_USERS) -> None:
        """`per_hour` 0: no limit."""
        self._rate = per_hour / 3600.0  # changes a second
        self._burst = float(max(1, per_hour // 10))
        self._clock = clock
        self._most = most_users
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # ref -> (left, at)

    def take(self, subject_ref: str) -> None:
        """One change for this user, or `TooManyRequests` (nothing taken) if they have none left."""
        if self._rate == 0:
            return
        now = self._clock().timestamp()
        left, at = self._buckets.pop(subject_ref, (self._burst, now))
        left = min(self._burst, left + max(0.0, now - at) * self._rate)
        if left < 1.0 - _ROUNDING:
            self._buckets[subject_ref] = (left, now)
            wait = math.ceil((1.0 - _ROUNDING - left) / self._rate)
            raise TooManyRequests(
                f"too many changes for this user: at most {round(self._rate * 3600)} an hour; "
                f"retry in {wait} s",
                retry_after=wait,
            )
        self._buckets[subject_ref] = (max(0.0, left - 1.0), now)
        if len(self._buckets) > self._most:
            self._buckets.popitem(last=False)
