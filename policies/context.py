"""What a decision is made from: the push, the subject's current state, the campaign.

The storage layer assembles these from its rows; the rules only read them, which is what
keeps the pipeline pure and lets tests build any situation in one line.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

import msgspec


# gc=False: made for every push and never part of a cycle (see gateway/gc_tuning.py).
class PushRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    topic: str
    title: str
    body: str
    data: dict[str, str]
    campaign_id: str | None = None
    personalized: bool = False
    near_geohash: str | None = None
    ttl_seconds: int = 86400
    content_cleared: bool = False
    """The caller knows this content passed rule 2 with the `content_key` in force: dispatch,
    deciding again a push accepted under the same rule code and settings. The rule reads
    nothing else, so its verdict cannot have changed, and the content is not scanned again (a
    PII scan is most of a transactional push's decision at dispatch)."""


class Scheduled(msgspec.Struct, frozen=True, gc=False):
    """A marketing push already accepted for this subject (queued, deferred, sending or delivered).
    `waiting`: dispatch decides it again before it goes: queued, deferred, or sending with no
    device reached and no worker holding it (waiting out a retry's backoff; `at` is then when
    the retry is due, if later than first planned). A waiting push
    carries its `expires_at`: dispatch defers it again, or lets it expire, by the settings in
    force when it is due, which the caps follow."""

    at: datetime
    topic: str
    waiting: bool = False
    expires_at: datetime | None = None
    push_id: str | None = None
    """Which push, and `order` the order it was decided in: dispatch tells a subject's pushes
    apart by them (the rules do not read them)."""
    order: int = 0
    planned: datetime | None = None
    """When a retry waiting (`at`, its due time) was planned: dispatch counts a push sent more
    than a minute after its planned time at the time it sends it (`frequency.SEND_LAG`)."""


class SubjectState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    status: Literal["active", "unknown", "erased"]
    consents: frozenset[str] = frozenset()
    topics_off: frozenset[str] = frozenset()
    timezone: str = "UTC"
    quiet_start: str = "21:00"
    quiet_end: str = "08:00"
    max_per_week: int = 3
    active_devices: int = 0
    location_geohash: str | None = None
    location_at: datetime | None = None
    muted_until: Mapping[str, datetime] = {}
    scheduled: tuple[Scheduled, ...] = ()


class CampaignState(msgspec.Struct, frozen=True):
    paused: bool = False


class RuleContext(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Everything a rule may look at, bundled so every rule has the same signature."""

    push: PushRequest
    subject: SubjectState
    campaign: CampaignState | None = None
    expires_at: datetime
