"""A push the minimization rule lets through must fit what each provider takes: 4096 bytes of
APNs payload, of Web Push encrypted body (RFC 8030 leaves no more guaranteed), of FCM message.
The adapters add their envelopes, the topic and the idempotency key, and Web Push its
aes128gcm header and tag; a push accepted at the rule's old 4096 bytes of title, body and data
came to 4187 (APNs) and 4319 (Web Push) bytes, was refused 413 and ended `failed`. The rule now
keeps `ENVELOPE_BYTES` of the providers' 4096 for them; this measures each adapter against it, with the
heaviest text the limits allow (three-byte characters) and ids of their real length."""

from __future__ import annotations

import json

import msgspec
import pytest

from policies.context import PushRequest
from policies.decision import RuleResult
from policies.minimization import ENVELOPE_BYTES, PROVIDER_MAX_BYTES, ContentVerdicts
from policies.settings import PolicySettings

from .doubles import FakeClock
from .test_apns import APNS, Apple
from .test_apns import run as run_apns
from .test_fcm import Google
from .test_fcm import run as run_fcm
from .test_webpush import VAPID_PEM, PushService
from .test_webpush import run as run_webpush

IDS = {"push_id": "psh_" + "1a" * 12, "device_id": "dev_" + "ab" * 12}
TEXT = {"title": "优" * 100, "body": "惠" * 500}  # the limits in characters, three bytes each


def _weight(data: dict[str, str]) -> int:
    return len(msgspec.json.encode({**TEXT, "data": data}))


def _heaviest(extra: int = 0) -> dict[str, object]:
    """A push whose title, body and data weigh what the rule lets through, plus `extra` bytes."""
    room = PROVIDER_MAX_BYTES - ENVELOPE_BYTES
    data = {"deeplink": "x" * (room + extra - _weight({"deeplink": ""}))}
    assert _weight(data) == room + extra
    return {**IDS, **TEXT, "data": data}


def _verdict(fields: dict[str, object]) -> str:
    push = PushRequest(topic="promotions", title=str(fields["title"]), body=str(fields["body"]),
                       data=dict(fields["data"]))  # type: ignore[call-overload]  # fmt: skip
    return ContentVerdicts().of(push, PolicySettings()).verdict


def test_the_rule_lets_through_the_heaviest_push_and_not_a_byte_more() -> None:
    assert _verdict(_heaviest()) == "pass"
    assert _verdict(_heaviest(extra=1)) == "reject"


def test_apns_gets_no_more_than_it_takes() -> None:
    results, received = run_apns(Apple(FakeClock()), (0, {**APNS, **_heaviest()}))
    assert results[0].status == "delivered"
    assert len(received[-1].body) <= PROVIDER_MAX_BYTES


def test_web_push_s_encrypted_body_is_no_more_than_a_push_service_must_take() -> None:
    service = PushService(FakeClock())
    results, received = run_webpush(service, VAPID_PEM, _heaviest())
    assert results[0].status == "delivered"
    assert len(received[-1].body) <= PROVIDER_MAX_BYTES


def test_fcm_s_message_is_no_more_than_it_takes() -> None:
    results, received = run_fcm(Google(FakeClock()), (0, _heaviest()))
    assert results[0].status == "delivered"
    message = json.loads(received[-1].body)["message"]
    sent = msgspec.json.encode({"notification": message["notification"], "data": message["data"]})
    assert len(sent) <= PROVIDER_MAX_BYTES


@pytest.mark.parametrize("adapter", ["apns", "webpush"])
def test_the_old_limit_did_not_fit(adapter: str) -> None:
    """The measure's point: without the budget, the heaviest push was too big."""
    fields = _heaviest(extra=ENVELOPE_BYTES)
    if adapter == "apns":
        _, received = run_apns(Apple(FakeClock()), (0, {**APNS, **fields}))
    else:
        _, received = run_webpush(PushService(FakeClock()), VAPID_PEM, fields)
    assert len(received[-1].body) > PROVIDER_MAX_BYTES


@pytest.mark.parametrize(("setting", "room"), [(4096, 3840), (3000, 3000), (256, 256)])
def test_an_admin_s_lower_limit_is_the_limit(setting: int, room: int) -> None:
    """The envelope caps the limit, it is not taken off it: at the smallest setting a push of
    256 bytes still goes, as it did."""
    settings = PolicySettings(payload_max_bytes=setting, body_max_chars=4096)
    bare = len(msgspec.json.encode({"title": "Paid", "body": "", "data": {}}))

    def verdict(size: int) -> RuleResult:
        push = PushRequest(topic="transactional", title="Paid", body="x" * (size - bare), data={})
        return ContentVerdicts().of(push, settings)

    assert verdict(room).verdict == "pass"
    assert [r.detail for r in verdict(room + 1).reasons] == [{"field": "payload", "limit": room}]
