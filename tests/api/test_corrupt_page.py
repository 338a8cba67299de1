"""One page of gateway.db whose bits rotted on disk, met by a read over HTTP: SQLCipher's check of
that page fails (SQLITE_CORRUPT), and its codec kept the error on the read connection, so every
later read of a page not yet in that connection's cache answered 500 too, other pushes included,
until a restart. Now the request that met it answers 500 and the readers are replaced: only what
needs the damaged page fails. The page is found, not guessed: the one a single push's read needs
and no other push's does, tried on copies of the file."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
import sqlcipher3
from conftest import FIXED_NOW, FakeClock
from litestar import Litestar
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families
from support import PAGE_SIZE, WebhookRelay, daytime_zone, rot_page

import storage.connections
import storage.failures
from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Secret, Settings
from storage.connections import Connection, connect
from storage.directory import SubjectKey
from storage.repositories import api_keys
from storage.store import DATA_FILE, DIRECTORY_FILE

PUSHES = 8


def _fold(path: Path, key: bytes) -> None:
    """Everything into the file itself: a page rotted there would go unseen while the WAL held a
    newer copy of it, and the copies tried hold the file alone."""
    conn = connect(path, key)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        conn.close()
    assert not os.path.exists(f"{path}-wal") or os.path.getsize(f"{path}-wal") == 0


def _reads(path: Path, key: bytes, push_id: str) -> bool:
    """Whether a fresh connection reads `push_id`'s whole row from the file at `path`."""
    try:
        conn = connect(path, key)
    except (OSError, sqlcipher3.Error):
        return False
    try:
        conn.execute("SELECT * FROM pushes WHERE push_id = ?", (push_id,)).fetchall()
        return True
    except sqlcipher3.Error:
        return False
    finally:
        conn.close()


def _page_only_for(path: Path, key: bytes, victim: str, others: list[str], work: Path) -> int:
    """A page whose damage fails the read of `victim` and of none of `others`."""
    for page in range(2, path.stat().st_size // PAGE_SIZE + 1):
        copy = work / f"page-{page}.db"
        shutil.copyfile(path, copy)
        rot_page(copy, page)
        if not _reads(copy, key, victim) and all(_reads(copy, key, other) for other in others):
            return page
    raise AssertionError("no page holds the victim's row alone")


@pytest.fixture
def settings(data_dir: Path, hook: WebhookRelay) -> Settings:
    """Deliveries to the local relay; a time zone where it is day at the fake clock's time, so
    marketing pushes go at once."""
    return Settings(
        data_dir=data_dir,
        worker_enabled=False,
        delivery_webhook_url=hook.url,
        delivery_webhook_secret=Secret("corrupt-page-webhook-secret-0123456789"),
        timezone=daytime_zone(FIXED_NOW),
    )


class Rotten(NamedTuple):
    service: dict[str, str]
    victim: str  # the push whose row is on the damaged page
    others: list[str]


def _queued_with_one_rotten(settings: Settings, clock: FakeClock, work: Path) -> Rotten:
    """PUSHES pushes queued, each to its own user, each row ~3 KB so that one page holds one
    row: then the page only the first push needs rots."""
    with TestClient(create_app(settings, clock)) as client:
        runtime = client.app.state.runtime
        _, secret = runtime.api_keys.create_sync("corrupt page test", ("pushes:write",))
        service = {"Authorization": f"Bearer {secret}"}
        push_ids = []
        for i in range(PUSHES):
            user = {"Authorization": f"Bearer {runtime.user_tokens.mint(f'rot-{i}', runtime.clock())}"}
            device = {"platform": "webhook", "token": f"relay-device-rot-{i}"}
            assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
            push = {
                "idempotency_key": f"rot-{i}", "user_id": f"rot-{i}", "topic": "transactional",
                "title": "Your statement", "body": f"Statement {i}: " + "x" * 480,
                "data": {"coupon_code": "c" * 900, "merchant_id": "m" * 900, "deeplink": "d" * 900},
            }  # fmt: skip
            answer = client.post("/v1/pushes", json=push, headers=service)
            assert answer.json()["outcome"] == "queued", answer.text
            push_ids.append(answer.json()["push_id"])
        key = runtime.store.keys.database_key
    path = settings.data_dir / DATA_FILE
    _fold(path, key)
    victim, others = push_ids[0], push_ids[1:]
    rot_page(path, _page_only_for(path, key, victim, others, work))
    return Rotten(service, victim, others)


def test_a_corrupt_page_fails_the_reads_that_need_it_not_every_later_read(
    settings: Settings, clock: FakeClock, tmp_path: Path
) -> None:
    service, victim, others = _queued_with_one_rotten(settings, clock, tmp_path)
    with TestClient(create_app(settings, clock)) as client:
        assert client.get(f"/v1/pushes/{victim}", headers=service).status_code == 500
        for push_id in others:
            answer = client.get(f"/v1/pushes/{push_id}", headers=service)
            assert answer.status_code == 200, (push_id, answer.text)
            assert answer.json()["push_id"] == push_id
        assert client.get(f"/v1/pushes/{victim}", headers=service).status_code == 500  # still damaged
        # Said where operators look, beside the log line: each read that met it.
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
        assert [s.value for s in families["cgw_storage_damaged_page_errors"].samples] == [2.0]


def test_a_push_on_a_corrupt_page_is_set_aside_and_the_others_are_delivered(
    settings: Settings, clock: FakeClock, hook: WebhookRelay, tmp_path: Path
) -> None:
    """The damaged push is due first, so it was claimed in every round: each round read it, the
    connection kept the error, the round's commit failed, and nothing was delivered to anyone.
    Now the round that meets it fails, the push is set aside for an hour (not dropped), and the
    next round delivers the others."""
    service, victim, others = _queued_with_one_rotten(settings, clock, tmp_path)
    with TestClient(create_app(settings, clock)) as client:
        dispatcher = client.app.state.runtime.dispatcher
        with pytest.raises(sqlcipher3.DatabaseError):
            client.blocking_portal.call(dispatcher.run_once, "test-worker", PUSHES)
        assert client.blocking_portal.call(dispatcher.run_once, "test-worker", PUSHES) == len(others)
        assert sorted(hook.push_ids) == sorted(others)
        for push_id in others:
            assert client.get(f"/v1/pushes/{push_id}", headers=service).json()["status"] == "delivered"
        assert client.blocking_portal.call(dispatcher.run_once, "test-worker", PUSHES) == 0  # set aside
        reader = client.app.state.runtime.store.data.reader()
        (due_at,) = reader.execute("SELECT due_at FROM outbox WHERE push_id = ?", (victim,)).fetchone()
        assert datetime.fromisoformat(due_at) == clock() + timedelta(hours=1)
        clock.advance(minutes=61)
        with pytest.raises(sqlcipher3.DatabaseError):  # tried again: still damaged, still there
            client.blocking_portal.call(dispatcher.run_once, "test-worker", PUSHES)
        assert sorted(hook.push_ids) == sorted(others)


def test_a_push_read_alone_on_a_corrupt_page_is_set_aside_too(
    client: TestClient[Litestar],
    runtime: Runtime,
    hook: WebhookRelay,
    as_user: Callable[[str], dict[str, str]],
    as_key: Callable[..., dict[str, str]],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the round's read fails for another reason (a subject's data that does not open), each
    push is read alone, and the one that met the damage was logged and left to its lease: the
    round went on, on a connection that kept the error. Stood in for where the round reads the
    directory: the round's read fails once with another error, and every read of the victim's
    subject with SQLCipher's."""
    key = as_key("pushes:write")
    push_ids = []
    for i in range(3):
        device = {"platform": "webhook", "token": f"relay-device-alone-{i}"}
        assert client.post("/v1/me/devices", json=device, headers=as_user(f"alone-{i}")).status_code == 201
        push = {"idempotency_key": f"alone-{i}", "user_id": f"alone-{i}", "topic": "transactional",
                "title": "Payment received", "body": "CNY 25.00"}  # fmt: skip
        push_ids.append(client.post("/v1/pushes", json=push, headers=key).json()["push_id"])
    victim = push_ids[1]
    reader = runtime.store.data.reader()
    row = reader.execute("SELECT subject_id FROM pushes WHERE push_id = ?", (victim,)).fetchone()
    victim_subject = row[0]
    directory = runtime.store.directory
    read = directory.by_subject_ids
    calls = 0

    def damaged(subject_ids: Collection[str]) -> dict[str, SubjectKey]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a subject's data does not open")
        if victim_subject in subject_ids:
            corrupt = sqlcipher3.DatabaseError("database disk image is malformed")
            corrupt.sqlite_errorcode = sqlcipher3.SQLITE_CORRUPT
            raise corrupt
        return read(subject_ids)

    monkeypatch.setattr(directory, "by_subject_ids", damaged)
    dispatcher = runtime.dispatcher
    with pytest.raises(sqlcipher3.DatabaseError):
        client.blocking_portal.call(dispatcher.run_once, "test-worker", 10)
    (due_at,) = reader.execute("SELECT due_at FROM outbox WHERE push_id = ?", (victim,)).fetchone()
    assert datetime.fromisoformat(due_at) == clock() + timedelta(hours=1)
    assert client.blocking_portal.call(dispatcher.run_once, "test-worker", 10) == 2
    assert sorted(hook.push_ids) == sorted(p for p in push_ids if p != victim)


def _directory_page_of_a_few(path: Path, key: bytes, refs: list[str], work: Path) -> tuple[int, set[str]]:
    """A page of subjects.db whose damage fails the rows of a few of `refs`, not the first's. Each
    ref after one that failed is read on a new connection: the one that met the page keeps the
    error (what the test is about)."""
    for page in range(2, path.stat().st_size // PAGE_SIZE + 1):
        copy = work / f"directory-{page}.db"
        shutil.copyfile(path, copy)
        rot_page(copy, page)
        unreadable: set[str] = set()
        conn: Connection | None = None
        try:
            for ref in refs:
                conn = conn or connect(copy, key)
                try:
                    conn.execute("SELECT wrapped_key FROM subjects WHERE subject_ref = ?", (ref,)).fetchall()
                except sqlcipher3.Error:
                    unreadable.add(ref)
                    conn.close()
                    conn = None
        except (OSError, sqlcipher3.Error):  # the page is one every connection reads at once
            continue
        finally:
            if conn is not None:
                conn.close()
        if 0 < len(unreadable) < len(refs) // 4 and refs[0] not in unreadable:
            return page, unreadable
    raise AssertionError("no directory page holds a few subjects")


def test_a_damaged_directory_page_fails_only_the_single_push_that_needs_it(
    settings: Settings, clock: FakeClock, tmp_path: Path
) -> None:
    """Single pushes sent at once share one writer unit, and read the directory (subjects.db)
    through its reader inside it. One whose subject's row is on a damaged page failed the unit;
    each push was done again alone, but on the same reader, which kept the error: pushes of
    healthy subjects answered 500 with it. The writer now has the readers renewed first."""
    users = [f"dir-{i}" for i in range(300)]
    with TestClient(create_app(settings, clock)) as client:
        runtime = client.app.state.runtime
        _, secret = runtime.api_keys.create_sync("corrupt page test", ("pushes:write",))
        refs = {runtime.store.pseudonyms.subject_ref(user): user for user in users}
        for ref in refs:
            runtime.store.directory.ensure(ref, clock())
        key = runtime.store.keys.directory_key
    path = settings.data_dir / DIRECTORY_FILE
    _fold(path, key)
    page, unreadable = _directory_page_of_a_few(path, key, list(refs), tmp_path)
    rot_page(path, page)
    victim = refs[min(unreadable)]
    healthy = [user for ref, user in refs.items() if ref not in unreadable][:6]
    service = {"Authorization": f"Bearer {secret}"}

    async def together(app: Litestar) -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:  # type: ignore[arg-type]
            answers = await asyncio.gather(*(
                http.post("/v1/pushes", headers=service, json={
                    "idempotency_key": f"together-{user}", "user_id": user, "topic": "transactional",
                    "title": "Payment received", "body": "CNY 25.00",
                })
                for user in [victim, *healthy]
            ))  # fmt: skip
        return [answer.status_code for answer in answers]

    with TestClient(create_app(settings, clock)) as client:
        assert client.blocking_portal.call(together, client.app) == [500] + [200] * len(healthy)
        # Met twice: by the shared unit, then by the victim's push alone; its 500 is not a third.
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
        assert [s.value for s in families["cgw_storage_damaged_page_errors"].samples] == [2.0]


@pytest.mark.parametrize(
    ("status", "then"),
    [
        pytest.param(503, "tried again later", id="to-retry"),
        pytest.param(410, "tried again later", id="refused-for-good"),  # no device has it
        pytest.param(200, "taken, none to try again: not sent again", id="taken"),
    ],
)
def test_a_damaged_page_met_by_a_rounds_write_fails_the_round_not_a_request_beside_it(
    settings: Settings,
    clock: FakeClock,
    hook: WebhookRelay,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    status: int,
    then: str,
) -> None:
    """A page only a round's writes need (a leaf of the deliveries table, which its settling
    appends to). The dispatcher caught the error to write each push alone, so its unit ended
    normally on a connection that kept the error, and the writer blamed the unit after it: an
    API key created in the same commit failed, and the round's results went in again."""
    with TestClient(create_app(settings, clock)) as client:
        runtime = client.app.state.runtime
        _, secret = runtime.api_keys.create_sync("corrupt page test", ("pushes:write",))
        service = {"Authorization": f"Bearer {secret}"}
        for i in range(8):
            user = {"Authorization": f"Bearer {runtime.user_tokens.mint(f'write-{i}', runtime.clock())}"}
            device = {"platform": "webhook", "token": f"relay-device-write-{i}"}
            assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
            push = {"idempotency_key": f"write-{i}", "user_id": f"write-{i}", "topic": "transactional",
                    "title": "Payment received", "body": "CNY 25.00"}  # fmt: skip
            assert client.post("/v1/pushes", json=push, headers=service).json()["outcome"] == "queued"
            if i == 3:  # the first four are delivered: the deliveries table has a leaf of its own
                assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 10) == 4
        key = runtime.store.keys.database_key
    path = settings.data_dir / DATA_FILE
    _fold(path, key)
    rot_page(path, _page_only_deliveries_need(path, key, tmp_path))

    hook.answers = [(status, {})]
    with TestClient(create_app(settings, clock)) as client:
        runtime = client.app.state.runtime

        async def round_and_a_key() -> list[object]:
            claimed, sending = await runtime.dispatcher.start_round("test-worker", 10)
            assert claimed == 4
            assert sending is not None
            await sending.sent
            settling = sending.settle()
            # Queued before the settling's group runs, so committed with it.
            create = partial(api_keys.create, name="beside the round", scopes=("pushes:write",), now=clock())
            beside = runtime.store.data.writer.submit(create)
            outcomes = list(await asyncio.gather(settling.recorded, beside, return_exceptions=True))
            settling.again()  # as the worker does; each push's recording then fails alone
            await settling.recorded
            return outcomes

        with caplog.at_level(logging.ERROR, logger="gateway.dispatch"):
            recorded, beside = client.blocking_portal.call(round_and_a_key)
        assert isinstance(recorded, sqlcipher3.DatabaseError)
        assert isinstance(beside, tuple), beside  # (the key, its secret)
        # Set aside, not sent again at every lease: finished if the relay took them, else due
        # in an hour (one nobody has must not stay `sending`, which counts against the caps).
        reader = runtime.store.data.reader()
        due = {datetime.fromisoformat(at) for (at,) in reader.execute("SELECT due_at FROM outbox")}
        assert due == (set() if status == 200 else {clock() + timedelta(hours=1)})
    said = [r.getMessage() for r in caplog.records if "could not be recorded" in r.getMessage()]
    assert len(said) == 4
    assert all(line.endswith(then) for line in said)


def _page_only_deliveries_need(path: Path, key: bytes, work: Path) -> int:
    """A page whose damage fails a full read of the deliveries table and of nothing else."""
    conn = connect(path, key)
    tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    conn.close()

    def reads(conn: Connection, sql: str) -> bool:
        try:
            conn.execute(sql).fetchall()
            return True
        except sqlcipher3.Error:
            return False

    for page in range(2, path.stat().st_size // PAGE_SIZE + 1):
        copy = work / f"deliveries-{page}.db"
        shutil.copyfile(path, copy)
        rot_page(copy, page)
        try:
            conn = connect(copy, key)
        except (OSError, sqlcipher3.Error):
            continue
        try:
            others = all(reads(conn, f'SELECT * FROM "{t}"') for t in tables if t != "deliveries")  # noqa: S608
            if others and not reads(conn, "SELECT * FROM deliveries NOT INDEXED"):
                return page
        finally:
            conn.close()
    raise AssertionError("no page only the deliveries table needs")


def test_an_erasure_cut_short_by_a_damaged_page_does_not_keep_the_gateway_from_starting(
    settings: Settings, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The directory's half of an erasure (the key destroyed) commits first; the data file's half
    met the damaged page, so the erasure stayed pending, to be finished at the next start. That
    start raised, and so did every later one: one person's damaged row kept the whole gateway down."""
    service, _, others = _queued_with_one_rotten(settings, clock, tmp_path)  # rot-0's push is damaged
    with TestClient(create_app(settings, clock)) as client:
        runtime = client.app.state.runtime
        ref = runtime.store.pseudonyms.subject_ref("rot-0")
        user = {"Authorization": f"Bearer {runtime.user_tokens.mint('rot-0', runtime.clock())}"}
        assert client.delete("/v1/me", headers=user).status_code == 500
        assert runtime.store.directory.pending_erasure(ref) is not None

    with (
        caplog.at_level(logging.ERROR, logger="gateway.rights"),
        TestClient(create_app(settings, clock)) as client,
    ):
        assert client.get(f"/v1/pushes/{others[0]}", headers=service).status_code == 200
        assert client.app.state.runtime.store.directory.pending_erasure(ref) is not None  # still to finish
    assert "could not be finished; it stays pending" in caplog.text


def _service_and_campaign(client: TestClient[Litestar]) -> tuple[dict[str, str], str]:
    """A service's key that sends pushes and makes campaigns, and one campaign it made."""
    _, secret = client.app.state.runtime.api_keys.create_sync("k", ("pushes:write", "campaigns:write"))
    service = {"Authorization": f"Bearer {secret}"}
    campaign = {"name": "Winter", "topic": "promotions"}
    return service, str(client.post("/v1/campaigns", json=campaign, headers=service).json()["campaign_id"])


def _queue(
    client: TestClient[Litestar], service: dict[str, str], user_id: str, devices: int, **push: str
) -> str:
    runtime = client.app.state.runtime
    user = {"Authorization": f"Bearer {runtime.user_tokens.mint(user_id, runtime.clock())}"}
    consent = {"granted": True, "notice_version": "v1"}
    assert client.put("/v1/me/consents/marketing", json=consent, headers=user).status_code == 200
    for n in range(devices):
        device = {"platform": "webhook", "token": f"relay-device-{user_id}-{n}"}
        assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
    body = {"idempotency_key": user_id, "user_id": user_id, "title": "Winter sale", "body": "20% off", **push}
    answer = client.post("/v1/pushes", json=body, headers=service)
    assert answer.json()["outcome"] == "queued", answer.text
    return str(answer.json()["push_id"])


def _rot_complaint_index(settings: Settings, key: bytes) -> None:
    """The campaign complaint index, one page while there are no complaints: read by the
    complaint rule when a campaign push ends, and by nothing a round reads."""
    path = settings.data_dir / DATA_FILE
    _fold(path, key)
    conn = connect(path, key)
    (root,) = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'idx_complaints_campaign_id'"
    ).fetchone()
    conn.close()
    rot_page(path, root)


@pytest.mark.parametrize(
    ("others", "answers"),
    [
        pytest.param(3, [200], id="among-others"),
        pytest.param(0, [200], id="alone"),
        pytest.param(0, [200, 410], id="one-device-refused-for-good"),
    ],
)
def test_a_push_whose_results_meet_a_damaged_page_is_set_aside_and_the_rest_recorded(
    settings: Settings,
    clock: FakeClock,
    hook: WebhookRelay,
    caplog: pytest.LogCaptureFixture,
    others: int,
    answers: list[int],
) -> None:
    """A page only a round's recording needs: the campaign complaint index, read by the complaint
    rule when a campaign push is delivered. The worker recorded the round again whole at every
    failure, claiming nothing meanwhile: no delivery for anyone, and the sent push went out again
    at each restart. Recorded push by push after that failure, the others are kept; the push
    that meets the page is not sent again when no device is to be tried again for it."""
    hook.answers = [(status, {}) for status in answers]
    with TestClient(create_app(settings, clock)) as client:
        runtime = client.app.state.runtime
        service, campaign_id = _service_and_campaign(client)
        push_ids = [
            _queue(client, service, "rec-0", len(answers), topic="promotions", campaign_id=campaign_id)
        ]
        push_ids += [_queue(client, service, f"rec-{i + 1}", 1, topic="transactional") for i in range(others)]
        key = runtime.store.keys.database_key
    _rot_complaint_index(settings, key)

    with TestClient(create_app(settings, clock)) as client:
        dispatcher = client.app.state.runtime.dispatcher

        async def round_recorded_again() -> None:
            claimed, sending = await dispatcher.start_round("test-worker", 10)
            assert claimed == 1 + others
            assert sending is not None
            await sending.sent
            settling = sending.settle()
            with pytest.raises(sqlcipher3.DatabaseError):
                await settling.recorded  # as the worker does: then record again
            settling.again()
            await settling.recorded

        with caplog.at_level(logging.ERROR, logger="gateway.dispatch"):
            client.blocking_portal.call(round_recorded_again)
        statuses = [client.get(f"/v1/pushes/{p}", headers=service).json()["status"] for p in push_ids]
        assert statuses == ["sending"] + ["delivered"] * others
        # No device to try again: not sent again at its next lease, nor later.
        clock.advance(minutes=2)
        assert client.blocking_portal.call(dispatcher.run_once, "test-worker", 10) == 0
        assert hook.push_ids.count(push_ids[0]) == len(answers)
    said = [
        (r.getMessage(), r.__dict__["push_id"])
        for r in caplog.records
        if "could not be recorded" in r.getMessage()
    ]
    assert [push_id for _, push_id in said] == [push_ids[0]]
    assert said[0][0].endswith("taken, none to try again: not sent again")


def test_a_push_whose_step_writes_meet_a_damaged_page_is_set_aside_and_the_rest_delivered(
    settings: Settings, clock: FakeClock, hook: WebhookRelay
) -> None:
    """A campaign push one device took and another is to retry; then it expires, and its end,
    which counts it for its campaign, reads the damaged complaint index. The round's reads all
    succeeded, so no push was set aside and the same push failed every round after: nothing
    was delivered to anyone. Each push's step is now tried alone, writes included."""
    hook.answers = [(200, {}), (503, {}), (200, {})]  # one device takes it, one asks for a retry
    with TestClient(create_app(settings, clock)) as client:
        runtime = client.app.state.runtime
        service, campaign_id = _service_and_campaign(client)
        campaign_push = _queue(client, service, "ends", 2, topic="promotions", campaign_id=campaign_id)
        assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 10) == 1
        key = runtime.store.keys.database_key
    _rot_complaint_index(settings, key)
    clock.advance(days=2)  # past its expiry

    with TestClient(create_app(settings, clock)) as client:
        runtime = client.app.state.runtime
        other = _queue(client, service, "other", 1, topic="transactional")
        with pytest.raises(sqlcipher3.DatabaseError):
            client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 10)
        assert client.blocking_portal.call(runtime.dispatcher.run_once, "test-worker", 10) == 1
        assert client.get(f"/v1/pushes/{other}", headers=service).json()["status"] == "delivered"
        reader = runtime.store.data.reader()
        (due_at,) = reader.execute("SELECT due_at FROM outbox WHERE push_id = ?", (campaign_push,)).fetchone()
        assert datetime.fromisoformat(due_at) == clock() + timedelta(hours=1)


def test_a_person_who_came_back_is_erased_though_their_earlier_cleanup_cannot_be_finished(
    settings: Settings, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The earlier erasure's data-file half met the damaged page and stayed pending. The person
    came back (a device, a consent) and asked again: each request tried the old cleanup first and
    answered 500, so their new data key was never destroyed until the file was mended."""
    _queued_with_one_rotten(settings, clock, tmp_path)  # rot-0's push is damaged
    with TestClient(create_app(settings, clock)) as client:
        runtime = client.app.state.runtime
        ref = runtime.store.pseudonyms.subject_ref("rot-0")
        user = {"Authorization": f"Bearer {runtime.user_tokens.mint('rot-0', runtime.clock())}"}
        assert client.delete("/v1/me", headers=user).status_code == 500  # its cleanup is pending
        assert client.delete("/v1/me", headers=user).status_code == 500  # nothing else to erase yet
        device = {"platform": "webhook", "token": "relay-device-came-back"}
        assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
        assert runtime.store.directory.resolve(ref) is not None
        with caplog.at_level(logging.ERROR, logger="gateway.rights"):
            assert client.delete("/v1/me", headers=user).status_code == 204
        assert runtime.store.directory.resolve(ref) is None  # the new key destroyed
        assert client.get("/v1/me/devices", headers=user).json() == []
    assert "given up to erase the one since" in caplog.text


def test_an_earlier_cleanup_held_up_by_a_lock_is_not_given_up(
    client: TestClient[Litestar], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a damaged page gives an earlier cleanup up: one held up by a passing failure (another
    process holding the write lock) answers 503 and is finished by the next request."""
    monkeypatch.setattr(storage.connections, "BUSY_TIMEOUT_MS", 200)
    ref = runtime.store.pseudonyms.subject_ref("held")
    user = {"Authorization": f"Bearer {runtime.user_tokens.mint('held', runtime.clock())}"}

    def with_the_lock_held(call: Callable[[], httpx.Response]) -> int:
        other = connect(runtime.store.data.path, runtime.store.keys.database_key)
        other.execute("BEGIN IMMEDIATE")
        try:
            return call().status_code
        finally:
            other.execute("ROLLBACK")
            other.close()

    device = {"platform": "webhook", "token": "relay-device-held-first"}
    assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
    assert with_the_lock_held(lambda: client.delete("/v1/me", headers=user)) == 503
    first = runtime.store.directory.pending_erasure(ref)
    assert first is not None  # its key destroyed, its rows still there
    device = {"platform": "webhook", "token": "relay-device-held-again"}
    assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201  # came back
    assert with_the_lock_held(lambda: client.delete("/v1/me", headers=user)) == 503
    assert client.delete("/v1/me", headers=user).status_code == 204
    reader = runtime.store.data.reader()
    left = reader.execute("SELECT count(*) FROM devices WHERE subject_id = ?", (first.subject_id,)).fetchone()
    assert left == (0,)  # the first erasure's cleanup finished, not given up
    assert runtime.store.directory.resolve(ref) is None
    assert runtime.store.directory.pending_erasure(ref) is None


def test_an_erasure_held_up_at_start_by_a_lock_still_stops_the_start(
    settings: Settings, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a damaged page lets the gateway start with an erasure left pending: one held up by a
    passing failure (another process holding the write lock) refuses the start, as before, and
    the next start finishes it; started, nothing would have."""
    monkeypatch.setattr(storage.connections, "BUSY_TIMEOUT_MS", 200)
    with TestClient(create_app(settings, clock)) as client:
        runtime = client.app.state.runtime
        ref = runtime.store.pseudonyms.subject_ref("held-at-start")
        user = {"Authorization": f"Bearer {runtime.user_tokens.mint('held-at-start', runtime.clock())}"}
        device = {"platform": "webhook", "token": "relay-device-held-at-start"}
        assert client.post("/v1/me/devices", json=device, headers=user).status_code == 201
        data_path, key = runtime.store.data.path, runtime.store.keys.database_key
        other = connect(data_path, key)
        other.execute("BEGIN IMMEDIATE")
        try:
            assert client.delete("/v1/me", headers=user).status_code == 503
        finally:
            other.execute("ROLLBACK")
        assert runtime.store.directory.pending_erasure(ref) is not None

    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(BaseExceptionGroup) as refused, TestClient(create_app(settings, clock)):
            pass
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert refused.group_contains(storage.failures.StorageBusyError)
    with TestClient(create_app(settings, clock)) as client:
        assert client.app.state.runtime.store.directory.pending_erasure(ref) is None  # finished


def test_a_damaged_first_page_is_counted_as_damage_at_each_read_not_taken_for_a_wrong_key(
    settings: Settings, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Page 1 rots while the gateway runs. Readers renewed after a read met damage (as they are)
    cannot open the file: that refusal was taken for a wrong key (`DatabaseLockedError`), so only
    the first read was counted as damage and logged as such, the rest as unhandled errors of
    another kind, sending an operator to the key store."""
    with TestClient(create_app(settings, clock)) as client:
        runtime = client.app.state.runtime
        _, secret = runtime.api_keys.create_sync("page one test", ("pushes:write",))
        service = {"Authorization": f"Bearer {secret}"}
        body = {"idempotency_key": "p1", "user_id": "page-one", "topic": "transactional",
                "title": "t", "body": "b"}  # fmt: skip
        push_id = client.post("/v1/pushes", json=body, headers=service).json()["push_id"]
        path = settings.data_dir / DATA_FILE
        _fold(path, runtime.store.keys.database_key)
        rot_page(path, 1)
        caplog.clear()
        for _ in range(3):
            runtime.store.data.renew_readers()  # as a read that met the damage leaves them
            assert client.get(f"/v1/pushes/{push_id}", headers=service).status_code == 500
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
        assert [s.value for s in families["cgw_storage_damaged_page_errors"].samples] == [3.0]
        said = [r.getMessage() for r in caplog.records]
        assert said.count("corrupt page: a read failed its check; read connections reopened") == 3, said
        kinds = {
            getattr(r, "exc_type", None) for r in caplog.records if r.getMessage() == "unhandled exception"
        }
        assert kinds == {"DatabaseError"}, kinds
