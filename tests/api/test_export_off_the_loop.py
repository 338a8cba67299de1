"""A user's export is read and decrypted off the event loop.

Its size is the user's whole history: a review measured 38 MB and 3 s for 10,000 pushes, during
which every other request of the process waited. No timing decides it: the directory's
`resolve`, which the export calls first, is wrapped to note the thread it runs on (and then does
its work), and it must run on a thread not the loop's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings


def test_an_export_is_made_off_the_event_loop(
    client: TestClient[Litestar],
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = as_user("exporter")
    consent = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=consent, headers=user).status_code == 200
    directory = runtime.store.directory
    read_on: list[int] = []
    resolve = directory.resolve

    def noting(subject_ref: str) -> Any:
        read_on.append(threading.get_ident())
        return resolve(subject_ref)

    monkeypatch.setattr(directory, "resolve", noting)
    loop_thread = client.blocking_portal.call(threading.get_ident)

    answer = client.get("/v1/me/export", headers=user)

    assert answer.status_code == 200, answer.text
    assert answer.json()["consent_history"], "the export holds the consent given"
    assert read_on, "the export did not resolve its subject"
    assert loop_thread not in read_on, (read_on, loop_thread)


def test_an_export_in_its_thread_leaves_the_policy_in_force_to_the_loop(
    client: TestClient[Litestar],
    runtime: Runtime,
    settings: Settings,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """Showing the user their preferences reads the newest policy (another process may have
    changed it). From the export's thread that read caught the shared policy source up, and a
    push unit on the loop could take its settings from one version and its `content_key` from
    the next. The thread now only reads; the loop's own units catch up, as before."""
    user = as_user("exporter")
    consent = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=consent, headers=user).status_code == 200
    before = runtime.policy.version
    with TestClient(create_app(settings, clock)) as other:  # another process's admin
        changed = other.put("/v1/admin/policy", json={"max_per_week": 2}, headers=as_key("admin"))
        assert changed.status_code == 200, changed.text

    exported = client.get("/v1/me/export", headers=user)

    assert exported.status_code == 200, exported.text
    assert exported.json()["preferences"]["frequency"]["max_per_week"] == 2  # the newest, shown
    assert runtime.policy.version is before
