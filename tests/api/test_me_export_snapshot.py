"""A user's export is read from one snapshot of the database.

It is about ten reads (the ledger, the consents, the devices, the pushes...), made one after
another off the event loop, for seconds for a user with a long history. Each on its own saw the
newest commit: a consent withdrawn meanwhile showed the user an export whose current consents
disagreed with its own history. Here the withdrawal lands after the first read (the ledger's):
SQLite's trace callback fires on the export thread's reader as each statement starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime
from storage.connections import Connection


def test_a_consent_withdrawn_during_an_export_is_not_half_seen(
    client: TestClient[Litestar],
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = as_user("exporter")
    given = client.put(
        "/v1/me/consents/marketing", json={"granted": True, "notice_version": "v1"}, headers=user
    )
    assert given.status_code == 200, given.text
    store = runtime.store
    landed: list[str] = []

    def withdraw(conn: Connection) -> None:
        conn.execute("UPDATE consents SET granted = 0 WHERE purpose = 'marketing'")

    def after_the_first_read(sql: str) -> None:
        if "FROM locations" in sql and not landed:  # the read after the ledger's
            landed.append(sql)
            store.data.writer.run_sync(withdraw)

    resolve = store.directory.resolve

    def tracing(subject_ref: str) -> Any:
        """Called first by the export, on its own thread: that thread's reader is traced."""
        store.data.reader().set_trace_callback(after_the_first_read)
        return resolve(subject_ref)

    monkeypatch.setattr(store.directory, "resolve", tracing)
    answer = client.get("/v1/me/export", headers=user)
    assert answer.status_code == 200, answer.text
    assert landed, "the withdrawal was not made during the export"
    export = answer.json()
    assert [e["granted"] for e in export["consent_history"]] == [True]
    assert export["preferences"]["consents"]["marketing"]["granted"] is True  # as the history says

    monkeypatch.undo()
    again = client.get("/v1/me/export", headers=user).json()
    assert again["preferences"]["consents"]["marketing"]["granted"] is False  # seen once it is there
