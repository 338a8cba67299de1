"""Rule 2, minimization: a push carries no more personal data than it needs.

Applies to every topic, transactional included: a payment result needs no e-mail address.
Reason codes: `payload_too_large` (detail `field`: title, body or payload, and `limit`),
`payload_field_not_allowed` (detail `field`: the data key), `payload_pii` (detail
`field` and `kind`; never the matched text, which would copy the personal data into
decisions and the audit trail).

Data keys are the sender's text too, so they are scanned like values, and a reason names a key
only if it looks like a key (letters, digits, `_.-`) with no personal data in it; otherwise it
says `data`. Reasons are stored unsealed and outlive erasure.
"""

import hashlib
import re
import sys
import unicodedata

import msgspec

from policies import reasons
from policies.context import PushRequest
from policies.decision import Reason, RuleResult, passed, reject
from policies.pii import could_hold_pii, find_pii, find_pii_in_label, label_readings
from policies.settings import RESERVED_DATA_KEY, PolicySettings


def _chars(text: str) -> int:
    """Characters as composed (NFC): a Korean title or an accented word counts the same whether
    its sender's system wrote it composed or as letters and combining marks (144 code points for
    a 60-syllable title, which NFC makes 60). The lower of the two counts: NFC decomposes a few
    characters (Devanagari क़, Hebrew presentation forms), which must not count more as sent."""
    if text.isascii():
        return len(text)
    return min(len(text), len(unicodedata.normalize("NFC", text)))


# What delivery adds to title, body and data on the way to a device: a provider's envelope
# (APNs' `aps.alert`, FCM's `notification`), the topic, the idempotency key the app de-duplicates
# on, and for Web Push the aes128gcm header and tag. A provider takes 4096 bytes of it all (APNs'
# payload, Web Push's encrypted body, FCM's message), so title, body and data may take at most
# `PROVIDER_MAX_BYTES - ENVELOPE_BYTES`, whatever `payload_max_bytes` allows: accepted at 4096
# bytes of its own, a push came to 4,319 bytes over Web Push, was refused 413 and ended
# `failed` (tests/unit/delivery/test_payload_budget.py measures each adapter against this).
PROVIDER_MAX_BYTES = 4096
ENVELOPE_BYTES = 256


def _size_reasons(push: PushRequest, settings: PolicySettings) -> list[Reason]:
    found = []
    for field, text, limit in (
        ("title", push.title, settings.title_max_chars),
        ("body", push.body, settings.body_max_chars),
    ):
        if _chars(text) > limit:
            found.append(Reason(reasons.PAYLOAD_TOO_LARGE, {"field": field, "limit": limit}))
    size = len(msgspec.json.encode({"title": push.title, "body": push.body, "data": push.data}))
    room = min(settings.payload_max_bytes, PROVIDER_MAX_BYTES - ENVELOPE_BYTES)
    if size > room:
        found.append(Reason(reasons.PAYLOAD_TOO_LARGE, {"field": "payload", "limit": room}))
    return found


_KEY_SHAPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _key_name(key: str) -> str | None:
    """The key as a reason may name it, or None when it must not be repeated."""
    return key if _KEY_SHAPE.fullmatch(key) and not find_pii_in_label(key) else None


# A line break inside a field is read as a space: a body may hold line breaks, and
# "138\n1234\n5678" reached a device as a phone number on three lines, since no detector reads
# across one. The fields are still joined by a line break for the gate, which keeps them apart.
_LINE_BREAKS = str.maketrans("\r\n", "  ")


def _one_line(text: str) -> str:
    return text.translate(_LINE_BREAKS) if "\n" in text or "\r" in text else text


def _pii_reasons(push: PushRequest) -> list[Reason]:
    keys = [reading for key in push.data for reading in label_readings(_one_line(key))]
    values = [_one_line(value) for value in push.data.values()]
    if not could_hold_pii("\n".join((_one_line(push.title), _one_line(push.body), *keys, *values))):
        return []
    texts = [("title", _one_line(push.title)), ("body", _one_line(push.body))]
    for key, value in sorted(push.data.items()):
        name = _key_name(key)
        texts += [
            *(("data", reading) for reading in label_readings(_one_line(key))),
            (f"data.{name}" if name else "data", _one_line(value)),
        ]
    return [
        Reason(reasons.PAYLOAD_PII, {"field": field, "kind": kind})
        for field, text in texts
        for kind in find_pii(text)
    ]


def _judge(push: PushRequest, settings: PolicySettings) -> RuleResult:
    """The rule reads the push's topic and content and the settings: nothing of its subject,
    campaign or time."""
    allowed = settings.data_keys_for(push.topic)
    found = _size_reasons(push, settings)
    found += [
        Reason(reasons.PAYLOAD_FIELD_NOT_ALLOWED, {"field": _key_name(key) or "data"})
        for key in sorted(push.data)
        if key not in allowed or RESERVED_DATA_KEY.match(key)
    ]
    found += _pii_reasons(push)
    return reject(*_unique(found)) if found else passed()


_CLEARED = passed()

RULE_REVISION = 7
"""This rule's code, as a number: raised with every change to this module, `policies/pii.py` or
`policies/settings.py` (tests/unit/policies/test_rule_revision.py holds their text to it)."""


def content_key(settings: PolicySettings) -> bytes:
    """All that rule 2's verdict on a content depends on besides the content: its code
    (`RULE_REVISION`), the Unicode data and the Python its counts and patterns run on, the
    msgspec that measures the payload, and the settings. A push accepted with the key in force
    passed the very rule that would judge it now. Not the policy version: an upgrade may
    tighten the rule under the same version."""
    runs_on = f"{unicodedata.unidata_version}|{sys.version_info[:3]}|{msgspec.__version__}"
    code = f"{RULE_REVISION}|{runs_on}|".encode()
    return hashlib.blake2b(code + msgspec.json.encode(settings), digest_size=8).digest()


class ContentVerdicts:
    """This rule's verdict on the last content judged within one unit of decisions (a
    submission, a dispatch round). The rule reads a push's topic, title, body and data and
    nothing else, and a campaign's pushes carry the same content and come together, in a
    submission and in the outbox: judged once rather than once each, they skip two fifths of a
    marketing push's decision (bench/decide_floor.py). One entry, not a table: telling a
    different content apart costs a few comparisons, where hashing every push's text into a
    table cost pushes of distinct content (a batch of receipts) 4%. A new policy read mid-unit
    is judged afresh."""

    def __init__(self) -> None:
        self._last: tuple[PushRequest, PolicySettings, RuleResult] | None = None

    def of(self, push: PushRequest, settings: PolicySettings) -> RuleResult:
        if push.content_cleared:
            return _CLEARED
        last = self._last
        if last is not None and last[1] is settings and _same_content(last[0], push):
            return last[2]
        verdict = _judge(push, settings)
        self._last = (push, settings, verdict)
        return verdict


def _same_content(one: PushRequest, other: PushRequest) -> bool:
    """Body first: it is where pushes of different content differ most."""
    return (
        one.body == other.body
        and one.title == other.title
        and one.topic == other.topic
        and one.data == other.data
    )


def _unique(found: list[Reason]) -> list[Reason]:
    """Keys that may not be named all become `data`: one reason each, not one per key."""
    kept: list[Reason] = []
    for reason in found:
        if reason not in kept:
            kept.append(reason)
    return kept
