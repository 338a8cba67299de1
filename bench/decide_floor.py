"""The policy pipeline alone: what one decision costs with no request, storage or crypto around it.

The batch and campaign targets of issue 8 allow 10 µs a decision (100,000 a second, dry run) and
25 µs (a million in 25 s), everything included. This times `policies.decide` by itself, in a
loop, for the pushes the benchmarks send: a transactional one and a marketing one (a campaign's
`promotions`, which runs consent, topics, quiet hours, complaints and the caps too), against a
subject with consent, one device and nothing planned; and the marketing one as a campaign's
pushes are decided, in one unit (`DecisionUnit`): their shared content judged once, and quiet
hours once for each zone and window their subjects share (one here, as the seed's few). What is
left of each target once the pipeline has run is what storage, the pseudonym, the directory and
the request path may cost (docs/performance.md, "What would reach the missed targets"). Numbers
only; a few seconds.

    python bench/decide_floor.py
"""

from __future__ import annotations

import platform
import statistics
import time
from datetime import UTC, datetime

from policies import DecisionUnit, PolicySettings, PushRequest
from policies.context import SubjectState
from policies.engine import decide

SETTINGS = PolicySettings()
NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)  # outside the default quiet hours
STATE = SubjectState(
    status="active", consents=frozenset({"marketing"}), topics_off=frozenset(), timezone="UTC",
    quiet_start=SETTINGS.quiet_start, quiet_end=SETTINGS.quiet_end, max_per_week=SETTINGS.max_per_week,
    active_devices=1, location_geohash=None, location_at=None, muted_until={}, scheduled=(),
)  # fmt: skip
# (topic, content judged once for the unit) → the target it is part of, and what that allows.
TARGETS = {
    ("transactional", False): ("dry-run batch", 10.0),
    ("promotions", False): ("1M campaign", 25.0),
    ("promotions", True): ("1M campaign", 25.0),
}


def _push(topic: str) -> PushRequest:
    return PushRequest(
        topic=topic, title="Your order has shipped", body="Order 123 is on its way. " + "x" * 96,
        data={"deeplink": "wallet://orders/123"}, campaign_id=None, personalized=False,
        near_geohash=None, ttl_seconds=86_400,
    )  # fmt: skip


def _us_per_decision(push: PushRequest, shared: bool, number: int = 20_000, rounds: int = 5) -> list[float]:
    took = []
    for _ in range(rounds):
        unit = DecisionUnit() if shared else None
        started = time.process_time()
        for _ in range(number):
            decide(push, STATE, None, NOW, SETTINGS, unit)
        took.append((time.process_time() - started) / number * 1e6)
    return took


def main() -> None:
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    for (topic, shared), (target, allowed) in TARGETS.items():
        push = _push(topic)
        outcome = decide(push, STATE, None, NOW, SETTINGS).outcome
        took = _us_per_decision(push, shared)
        median = statistics.median(took)
        spread = f"{min(took):.2f}–{max(took):.2f}"
        label = topic + (", shared" if shared else "")
        print(
            f"{label:<22} {outcome:<8} decide() {median:5.2f} µs CPU (rounds {spread}); the {target} "
            f"target allows {allowed:.0f} µs a decision, {allowed - median:.1f} left for the rest"
        )


if __name__ == "__main__":
    main()
