"""A user's first write makes their subject (a new id and data key) off the event loop.

Making it commits to the subject directory and waits for that commit's fsync, first waiting for
the write lock, which another process on the data dir may hold for seconds; wrapping the new key
reads the key store from disk. On the loop, each new user would stall every other request for
that long. No timing decides it: `SubjectDirectory.ensure` is wrapped to note the thread it runs
on (and then does its work), and for each way in, it must run, on a thread not the loop's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime

Client = TestClient[Litestar]
FIRST_WRITES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "consent": ("PUT", "/v1/me/consents/marketing", {"granted": True, "notice_version": "v1"}),
    "device": ("POST", "/v1/me/devices", {"platform": "webhook", "token": "relay-device-first-0001"}),
    "preferences": ("PATCH", "/v1/me/preferences", {"locale": "zh-CN"}),
    "complaint": ("POST", "/v1/me/complaints", {"reason": "too_frequent"}),
}


@pytest.mark.parametrize("way_in", sorted(FIRST_WRITES))
def test_a_new_users_subject_is_made_off_the_event_loop(
    client: Client,
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    monkeypatch: pytest.MonkeyPatch,
    way_in: str,
) -> None:
    directory = runtime.store.directory
    made_on: list[int] = []
    ensure = directory.ensure

    def noting(subject_ref: str, now: Any) -> Any:
        made_on.append(threading.get_ident())
        return ensure(subject_ref, now)

    monkeypatch.setattr(directory, "ensure", noting)
    loop_thread = client.blocking_portal.call(threading.get_ident)
    method, path, body = FIRST_WRITES[way_in]

    answer = client.request(method, path, json=body, headers=as_user(f"first-{way_in}"))

    assert answer.status_code in (200, 201), answer.text
    assert made_on, "the subject was not made through `ensure`"
    assert loop_thread not in made_on, (made_on, loop_thread)
    assert directory.resolve(runtime.store.pseudonyms.subject_ref(f"first-{way_in}")) is not None


def test_an_erasure_while_the_subject_is_made_leaves_no_write_under_the_erased_subject(
    client: Client,
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop is free while the thread makes the subject: the user's own `DELETE /v1/me` can run
    whole in between. The first write then went under the erased subject, after its cleanup, and
    stayed. Now it is looked up again on the loop, and the user comes back as a new subject, as
    if the erasure had come first. The erasure is injected right after the subject's commit."""
    user = as_user("racer")
    ref = runtime.store.pseudonyms.subject_ref("racer")
    directory = runtime.store.directory
    ensure = directory.ensure
    erased: list[int] = []

    def made_then_erased(subject_ref: str, now: Any) -> Any:
        made = ensure(subject_ref, now)  # committed, on the thread
        if not erased:
            erased.append(client.delete("/v1/me", headers=user).status_code)
        return made

    monkeypatch.setattr(directory, "ensure", made_then_erased)
    consent = {"granted": True, "notice_version": "v1"}
    answer = client.put("/v1/me/consents/marketing", json=consent, headers=user)
    monkeypatch.undo()

    assert erased == [204]
    assert answer.status_code == 200, answer.text
    live = directory.resolve(ref)
    assert live is not None  # back as a new subject
    owners = {row[0] for row in runtime.store.data.reader().execute("SELECT subject_id FROM consents")}
    assert owners == {live.subject_id}  # nothing under the erased one
    got = client.get("/v1/me/preferences", headers=user).json()
    assert got["consents"]["marketing"]["granted"] is True
