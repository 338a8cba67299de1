"""An erasure forgets what a user's pushes tell of them a slice at a time, each slice its own
writer unit: in one unit, on the event loop as the writer's SQL is, a user with 20,000 pushes
held every other request for 0.7-1.3 s (a review of what holds the loop). Every push is still
forgotten, and the ledger records the erasure once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient

from gateway.runtime import Runtime
from gateway.services import rights
from storage.connections import Connection
from storage.repositories import erasure

PUSHES = 2 * rights.ERASE_SLICE + rights.ERASE_SLICE // 2


def test_a_user_with_many_pushes_is_erased_a_slice_at_a_time(
    client: TestClient[Litestar],
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = as_user("sam")
    device = {"platform": "webhook", "token": "relay-device-sam-0001"}
    assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
    pushes = [
        {"idempotency_key": f"sam-{i}", "user_id": "sam", "topic": "transactional",
         "title": "Payment received", "body": "Your payment was received."}
        for i in range(PUSHES)
    ]  # fmt: skip
    answer = client.post("/v1/pushes/batch", json={"pushes": pushes}, headers=as_key("pushes:write"))
    assert answer.status_code == 200, answer.text
    subject_id = runtime.store.directory.resolve(runtime.store.pseudonyms.subject_ref("sam")).subject_id  # type: ignore[union-attr]

    slices: list[int] = []
    forget = erasure.forget_pushes

    def noting(conn: Connection, rowids: Sequence[int]) -> Any:
        slices.append(len(rowids))
        return forget(conn, rowids)

    monkeypatch.setattr(erasure, "forget_pushes", noting)
    assert client.delete("/v1/me", headers=user).status_code in (200, 202, 204)

    assert slices == [rights.ERASE_SLICE, rights.ERASE_SLICE, rights.ERASE_SLICE // 2, 0]
    reader = runtime.store.data.reader()
    left = reader.execute(
        "SELECT count(*) FROM pushes WHERE subject_id = ? "
        "AND (fingerprint != X'' OR updated_at != created_at OR sent_at IS NOT NULL)",
        (subject_id,),
    ).fetchone()[0]
    assert left == 0
    assert (
        reader.execute("SELECT count(*) FROM pushes WHERE subject_id = ?", (subject_id,)).fetchone()[0]
        == PUSHES
    )
    erased = reader.execute("SELECT count(*) FROM ledger WHERE kind = 'subject.erased'").fetchone()[0]
    assert erased == 1
