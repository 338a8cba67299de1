"""`subject_state.load_many` loads each part of a subject's state it is asked for, as a full load
has it, and leaves the others at their defaults; the status and device count always. And a
submission asks for what all its pushes read (tests/api/test_dispatch_rules.py: a round too).

tests/property/test_state_parts.py holds the parts to what `decide` reads; this holds storage
to the parts. A subject is given something in every part (consents, preferences, a location, a
mute, a planned marketing push) through the API, and its state is read back each way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from conftest import FakeClock
from litestar import Litestar
from litestar.testing import TestClient
from support import STATE_FIELDS

from gateway.runtime import Runtime
from policies import PolicySettings, StateParts, SubjectState
from storage.connections import Connection
from storage.repositories import complaints, subject_state

Client = TestClient[Litestar]
Headers = dict[str, str]


@pytest.fixture
def loaded(
    client: Client,
    runtime: Runtime,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> Callable[[StateParts], SubjectState]:
    alice = as_user("alice")
    for purpose in ("marketing", "location", "personalization"):
        consent = {"granted": True, "notice_version": "v1"}
        granted = client.put(f"/v1/me/consents/{purpose}", json=consent, headers=alice)
        assert granted.status_code == 200, granted.text
    token = {"platform": "fcm", "token": "fcm-token-alice"}
    device = client.post("/v1/me/devices", json=token, headers=alice)
    assert device.status_code == 201, device.text
    prefs = {
        "timezone": "Asia/Shanghai",
        "topics": {"product_tips": False},
        "quiet_hours": {"start": "22:30", "end": "07:15"},
        "frequency": {"max_per_week": 2},
    }
    assert client.patch("/v1/me/preferences", json=prefs, headers=alice).status_code == 200
    beijing = {"lat": 39.9042, "lon": 116.4074}
    assert client.put("/v1/me/location", json=beijing, headers=alice).status_code == 200
    push = {
        "idempotency_key": "planned-1", "user_id": "alice", "topic": "promotions", "title": "Winter sale",
        "body": "20% off at partner stores today", "data": {},
    }  # fmt: skip
    queued = client.post("/v1/pushes", json=push, headers=as_key("pushes:write"))
    assert queued.json()["outcome"] in ("queued", "deferred"), queued.text
    ref = client.get("/v1/me/preferences", headers=alice).json()["subject_ref"]
    key = runtime.store.directory.resolve(ref)
    assert key is not None
    now = clock()

    def mute(conn: Connection) -> None:
        complaints.mute(conn, key.subject_id, "cart_reminders", now + timedelta(days=2), "complaint")

    runtime.store.data.writer.run_sync(mute)

    def load(parts: StateParts) -> SubjectState:
        def read(conn: Connection) -> SubjectState:
            return subject_state.load_many(conn, [key], now, PolicySettings(), "UTC", parts)[key.subject_id]

        return runtime.store.data.writer.run_sync(read)

    return load


def test_each_part_is_loaded_as_a_full_load_has_it_and_the_rest_left_at_defaults(
    loaded: Callable[[StateParts], SubjectState],
) -> None:
    full = loaded(StateParts.ALL)
    bare = SubjectState(status="active", timezone="UTC")  # the defaults the others are left at
    for part, fields in STATE_FIELDS.items():
        assert all(getattr(full, f) != getattr(bare, f) for f in fields), f"{part} has nothing to show"
    for part in STATE_FIELDS:
        state = loaded(part)
        assert (state.status, state.active_devices) == ("active", 1)
        for other, fields in STATE_FIELDS.items():
            source = full if other == part else bare
            assert {f: getattr(state, f) for f in fields} == {f: getattr(source, f) for f in fields}, part
    assert loaded(StateParts(0)).active_devices == 1


def test_a_batch_reads_what_each_of_its_pushes_is_judged_by(
    client: Client, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> None:
    """A transactional push first in the batch: read for its topic alone, the promotion after it
    would be judged by default preferences, and queued against the user's choice."""
    bo = as_user("bo")
    consent = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=consent, headers=bo).status_code == 200
    token = {"platform": "fcm", "token": "fcm-token-bo"}
    assert client.post("/v1/me/devices", json=token, headers=bo).status_code == 201
    off = {"topics": {"promotions": False}}
    assert client.patch("/v1/me/preferences", json=off, headers=bo).status_code == 200
    common = {"user_id": "bo", "title": "Hello", "body": "Your order shipped", "data": {}}
    batch = {
        "pushes": [
            {"idempotency_key": "b-1", "topic": "transactional", **common},
            {"idempotency_key": "b-2", "topic": "promotions", **common},
        ]
    }
    answer = client.post("/v1/pushes/batch", json=batch, headers=as_key("pushes:write"))
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["results"]
    assert first["outcome"] == "queued"
    assert (second["outcome"], second["reasons"]) == (
        "rejected",
        [{"code": "topic_opted_out", "topic": "promotions"}],
    )
