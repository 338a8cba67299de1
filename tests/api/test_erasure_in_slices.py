"""An erasure forgets what a user's pushes tell of them a slice at a time, each slice its own
writer unit: in one unit, on the event loop as the writer's SQL is, a user with 20,000 pushes
held every other request for 0.7-1.3 s (a review of what holds the loop). Every push is still
forgotten, the ledger records the erasure once, and one cut short between slices is finished
by the user's retry."""

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
from storage.failures import StorageBusyError
from storage.repositories import erasure

Client = TestClient[Litestar]
SLICE = rights.ERASE_SLICE
PUSHES = 2 * SLICE + SLICE // 2


@pytest.fixture
def sam(
    client: Client, runtime: Runtime, as_user: Callable[[str], Headers], as_key: Callable[..., Headers]
) -> tuple[Headers, str]:
    """A user with `PUSHES` pushes recorded: their headers and their subject id."""
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
    key = runtime.store.directory.resolve(runtime.store.pseudonyms.subject_ref("sam"))
    assert key is not None
    return user, key.subject_id


def _all_forgotten(runtime: Runtime, subject_id: str) -> None:
    reader = runtime.store.data.reader()
    left = reader.execute(
        "SELECT count(*) FROM pushes WHERE subject_id = ? "
        "AND (fingerprint != X'' OR updated_at != created_at OR sent_at IS NOT NULL)",
        (subject_id,),
    ).fetchone()[0]
    assert left == 0
    kept = reader.execute("SELECT count(*) FROM pushes WHERE subject_id = ?", (subject_id,)).fetchone()[0]
    assert kept == PUSHES
    assert reader.execute("SELECT count(*) FROM ledger WHERE kind = 'subject.erased'").fetchone()[0] == 1
    assert runtime.store.directory.pending_erasures() == []


def test_a_user_with_many_pushes_is_erased_a_writer_unit_a_slice(
    client: Client, runtime: Runtime, sam: tuple[Headers, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, subject_id = sam
    writer = runtime.store.data.writer
    units: list[tuple[str, int]] = []
    run = writer.run

    async def noting(fn: Any) -> Any:
        name = getattr(fn, "func", fn).__name__
        if name in ("forget_pushes", "erase_subject_data"):
            units.append((name, len(fn.keywords.get("rowids", ()))))
        return await run(fn)

    monkeypatch.setattr(writer, "run", noting)
    assert client.delete("/v1/me", headers=user).status_code == 204

    slices = [("forget_pushes", SLICE), ("forget_pushes", SLICE), ("forget_pushes", SLICE // 2)]
    assert units == [*slices, ("erase_subject_data", 0)]  # each its own unit, the subject's rows last
    _all_forgotten(runtime, subject_id)


def test_an_erasure_cut_short_between_slices_is_finished_by_the_users_retry(
    client: Client, runtime: Runtime, sam: tuple[Headers, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, subject_id = sam
    forget = erasure.forget_pushes
    calls: list[int] = []

    def second_refused(conn: Connection, rowids: Sequence[int]) -> None:
        calls.append(len(rowids))
        if len(calls) == 2:  # another process held the write lock past the busy timeout
            raise StorageBusyError("the write lock was held too long")
        forget(conn, rowids)

    monkeypatch.setattr(erasure, "forget_pushes", second_refused)
    assert client.delete("/v1/me", headers=user).status_code == 503
    assert [p.subject_id for p in runtime.store.directory.pending_erasures()] == [subject_id]

    monkeypatch.setattr(erasure, "forget_pushes", forget)
    assert client.delete("/v1/me", headers=user).status_code == 204
    _all_forgotten(runtime, subject_id)
