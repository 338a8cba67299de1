"""The combiner, TTL expiry and settings validation: the pieces every rule relies on."""

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from policies import PolicySettings, Reason, check_expiry
from policies.decision import RuleResult, combine, defer, passed, reject

NOW = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
EXPIRES = NOW + timedelta(days=1)
A, B, C = Reason("quiet_hours"), Reason("no_device"), Reason("topic_interval")


@pytest.mark.parametrize(
    ("results", "outcome", "reasons", "deliver_after", "allowed_by"),
    [
        ([passed("x"), passed("y")], "queued", (), None, ("x", "y")),
        ([passed("x"), defer(NOW, A)], "deferred", (A,), NOW, ("x",)),
        ([defer(NOW, A), defer(LATER, C)], "deferred", (A, C), LATER, ()),
        ([defer(NOW, A), reject(B), passed("x")], "rejected", (A, B), None, ()),
        ([reject(B), reject(C)], "rejected", (B, C), None, ()),
    ],
)
def test_combine_reject_beats_defer_beats_pass(
    results: list[RuleResult],
    outcome: str,
    reasons: tuple[Reason, ...],
    deliver_after: datetime | None,
    allowed_by: tuple[str, ...],
) -> None:
    decision = combine(results, EXPIRES)
    assert (decision.outcome, decision.reasons, decision.deliver_after) == (outcome, reasons, deliver_after)
    assert (decision.allowed_by, decision.expires_at) == (allowed_by, EXPIRES)


def test_combine_denies_by_default() -> None:
    with pytest.raises(ValueError, match="refusing to allow"):
        combine([], EXPIRES)


def test_verdicts_other_than_pass_need_reasons() -> None:
    with pytest.raises(ValueError, match="reason"):
        reject()
    with pytest.raises(ValueError, match="reason"):
        defer(NOW)


@pytest.mark.parametrize(
    ("now", "expired"),
    [(EXPIRES - timedelta(seconds=1), False), (EXPIRES, True), (EXPIRES + timedelta(days=1), True)],
)
def test_check_expiry_at_dispatch(now: datetime, expired: bool) -> None:
    assert check_expiry(EXPIRES, now) == (Reason("expired") if expired else None)


def test_settings_decode_strictly() -> None:
    raw = b'{"max_per_week": 2, "allowed_data_keys": {"promotions": ["deeplink"], "product_tips": []}}'
    settings = msgspec.json.decode(raw, type=PolicySettings, strict=True)
    assert settings.max_per_week == 2
    assert set(settings.data_keys_for("promotions")) == {"deeplink"}
    assert set(settings.data_keys_for("product_tips")) == set()
    assert set(settings.data_keys_for("flash_sales")) == {
        "deeplink",
        "coupon_code",
        "merchant_id",
        "image_url",
    }


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"max_per_week": -1}', "max_per_week"),
        (b'{"max_per_week": "3"}', "max_per_week"),
        (b'{"max_per_day": 1.5}', "max_per_day"),
        (b'{"quiet_start": "25:00"}', "quiet_start"),
        (b'{"quiet_end": "8:00"}', "quiet_end"),
        (b'{"complaint_pause_rate": 1.5}', "complaint_pause_rate"),
        (b'{"complaint_pause_rate": -0.1}', "complaint_pause_rate"),
        (b'{"max_ttl_seconds": 604801}', "max_ttl_seconds"),
        (b'{"payload_max_bytes": 10000}', "payload_max_bytes"),
        (b'{"allowed_data_keys": {"spam": ["deeplink"]}}', "allowed_data_keys"),
        (b'{"allowed_data_keys": {"promotions": ["Bad Key"]}}', "allowed_data_keys"),
        (b'{"lax_mode": true}', "lax_mode"),
        (b'{"default_ttl_seconds": 100, "max_ttl_seconds": 50}', "max_ttl_seconds"),
        (b'{"min_quiet_minutes": 700}', "min_quiet_minutes"),
    ],
)
def test_settings_reject_nonsense(raw: bytes, field: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=field):
        msgspec.json.decode(raw, type=PolicySettings, strict=True)
