"""What someone who copies the data directory gets: SQLCipher files the stdlib cannot read, WALs
whose pages are encrypted too, and no raw user_id, device token, e-mail, phone number, coordinates
or complaint text anywhere in the directory's bytes — while the WAL is live and after checkpoints
and shutdown.

The byte scans show encryption at rest only: SQLCipher encrypts every page, so they would not see
a raw value in a plaintext column. What the tables hold, read decrypted, is checked here for the
same people (`test_no_personal_data_in_the_tables`), after erasure, and for a whole session in
tests/api/test_no_raw_values_in_tables.py."""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from support import logged, readers, scan_bytes, scan_tables, stored_values

from gateway.app import create_app
from gateway.clock import system_clock
from gateway.runtime import Runtime
from gateway.settings import Settings
from storage.store import DATA_FILE, DIRECTORY_FILE

Headers = dict[str, str]
DB_FILES = (DATA_FILE, DIRECTORY_FILE)
SQLITE_MAGIC = b"SQLite format 3\x00"
# Text that a plaintext SQLite page of our schema would carry.
SCHEMA_TEXT = [b"CREATE TABLE", b"ledger_no_update", b"wrapped_key", b"subject_ref", b"consent.given"]


class Person:
    """One user with unique markers, so a hit in the byte scan can only come from this test."""

    def __init__(self, kind: str) -> None:
        tag = secrets.token_hex(6)
        digits = str(int(tag, 16) % 10**8).zfill(8)
        self.user_id = {
            "email": f"wallet.user.{tag}@example.com",
            "phone": f"+86139{digits}",
            "plain": f"wallet-user-{tag}",
        }[kind]
        self.email = f"contact.{tag}@example.org"
        self.phone = f"+86137{digits}"
        self.tokens = {
            "fcm": f"fcm-MARKER-{tag}-{secrets.token_hex(8)}",
            "apns": secrets.token_hex(32),
            "webhook": f"relay-MARKER-{tag}",
        }
        self.webpush_endpoint = f"https://fcm.googleapis.com/fcm/send/MARKER-{tag}"
        self.comment_marker = f"complaint-MARKER-{tag}"  # free text, sealed like the rest
        self.comment = f"{self.comment_marker}: the offer knew about my divorce"
        self.lat, self.lon = 31.2 + int(tag[:4], 16) / 10**6, 121.4 + int(tag[4:8], 16) / 10**6

    def needles(self) -> list[str]:
        return [
            self.user_id,
            self.email,
            self.phone,
            *self.tokens.values(),
            self.webpush_endpoint,
            self.comment_marker,
            f"{self.lat:.6f}",
            f"{self.lon:.6f}",
        ]


def _flow(client: TestClient[Litestar], headers: Headers, person: Person) -> None:
    for purpose in ("marketing", "personalization", "location"):
        answer = client.put(
            f"/v1/me/consents/{purpose}", json={"granted": True, "notice_version": "2026-11"}, headers=headers
        )
        assert answer.status_code == 200, answer.text
    for platform, token in person.tokens.items():
        created = client.post("/v1/me/devices", json={"platform": platform, "token": token}, headers=headers)
        assert created.status_code == 201, created.text
    subscription = json.dumps(
        {"endpoint": person.webpush_endpoint, "keys": {"p256dh": "B" + "A" * 86, "auth": "x" * 22}}
    )
    created = client.post(
        "/v1/me/devices", json={"platform": "webpush", "token": subscription}, headers=headers
    )
    assert created.status_code == 201, created.text
    placed = client.put("/v1/me/location", json={"lat": person.lat, "lon": person.lon}, headers=headers)
    assert placed.status_code == 200, placed.text
    complaint = {"reason": "privacy", "comment": person.comment}
    filed = client.post("/v1/me/complaints", json=complaint, headers=headers)
    assert filed.status_code == 201, filed.text
    changed = client.patch(
        "/v1/me/preferences",
        json={
            "timezone": "Asia/Shanghai",
            "locale": "zh-CN",
            "quiet_hours": {"start": "22:00", "end": "07:30"},
            "frequency": {"max_per_week": 2},
            "topics": {"flash_sales": False},
        },
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    withdrawn = client.put(
        "/v1/me/consents/personalization",
        json={"granted": False, "notice_version": "2026-11"},
        headers=headers,
    )
    assert withdrawn.status_code == 200, withdrawn.text


@pytest.fixture
def people(
    client: TestClient[Litestar], as_user: Callable[[str], Headers], caplog: pytest.LogCaptureFixture
) -> list[Person]:
    caplog.set_level(logging.DEBUG)
    crowd = [Person("email"), Person("phone"), Person("plain")]
    for person in crowd:
        _flow(client, as_user(person.user_id), person)
    return crowd


def _assert_stdlib_cannot_read(path: Path) -> None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="file is not a database"):
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()


def test_the_flow_really_stored_the_markers(
    client: TestClient[Litestar], people: list[Person], as_user: Callable[[str], Headers]
) -> None:
    """Positive control: the data is there (decrypted on export), so a clean scan means encrypted."""
    for person in people:
        export = client.get("/v1/me/export", headers=as_user(person.user_id)).json()
        tokens = {d["token"] for d in export["devices"]}
        assert set(person.tokens.values()) <= tokens
        assert any(person.webpush_endpoint in t for t in tokens)
        assert export["location"]["precision"] == 6
        assert [c["comment"] for c in export["complaints"]] == [person.comment]


def test_no_personal_data_in_the_tables(
    client: TestClient[Litestar], people: list[Person], runtime: Runtime
) -> None:
    """The same people, every table of both databases read decrypted: the byte scans below would
    not see a raw value in a plaintext column, as SQLCipher encrypts the pages around it."""
    needles = [n for person in people for n in person.needles()]
    assert scan_tables(readers(runtime), needles) == {}


def test_scan_helper_finds_a_planted_needle(tmp_path: Path) -> None:
    (tmp_path / "plain.txt").write_bytes(b"xx wallet-user-planted xx")
    (tmp_path / "wide.bin").write_bytes("wallet-user-planted".encode("utf-16-le"))
    assert scan_bytes(tmp_path, ["wallet-user-planted"]) == {"wallet-user-planted": ["plain.txt", "wide.bin"]}


def test_database_files_and_live_wal_are_unreadable_without_the_key(
    client: TestClient[Litestar], people: list[Person], data_dir: Path, tmp_path: Path
) -> None:
    for name in DB_FILES:
        wal = data_dir / f"{name}-wal"
        assert wal.exists(), f"{name} has no live WAL to test"
        assert wal.stat().st_size > 0, f"{name} has an empty WAL"
        # copy main file + WAL together, so the stdlib would replay the WAL if it could read it
        copy_dir = tmp_path / f"copy-{name}"
        copy_dir.mkdir()
        shutil.copyfile(data_dir / name, copy_dir / name)
        shutil.copyfile(wal, copy_dir / f"{name}-wal")
        _assert_stdlib_cannot_read(copy_dir / name)
        _assert_stdlib_cannot_read(wal)
        _assert_stdlib_cannot_read(data_dir / name)
        assert not (data_dir / name).read_bytes().startswith(SQLITE_MAGIC)
        wal_bytes = wal.read_bytes()
        for text in SCHEMA_TEXT:
            assert text not in wal_bytes, f"{text!r} readable in {name}-wal"
            assert text not in (data_dir / name).read_bytes(), f"{text!r} readable in {name}"


def test_no_personal_data_in_the_data_dir_while_the_wal_is_live(
    client: TestClient[Litestar], people: list[Person], data_dir: Path
) -> None:
    assert any(p.name.endswith("-wal") and p.stat().st_size for p in data_dir.iterdir())
    needles = [n for person in people for n in person.needles()]
    assert scan_bytes(data_dir, needles) == {}


def test_no_personal_data_after_checkpoint_and_shutdown(
    settings: Settings, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    crowd = [Person("email"), Person("phone")]
    needles = [n for person in crowd for n in person.needles()]
    app = create_app(settings)
    with TestClient(app) as client:
        runtime: Runtime = app.state.runtime
        for person in crowd:
            token = runtime.user_tokens.mint(person.user_id, system_clock())
            _flow(client, {"Authorization": f"Bearer {token}"}, person)
        runtime.store.data.checkpoint()
        assert (data_dir / f"{DATA_FILE}-wal").stat().st_size == 0
        assert scan_bytes(data_dir, needles) == {}
    # lifespan shutdown closed every connection
    assert scan_bytes(data_dir, needles) == {}
    for name in DB_FILES:
        _assert_stdlib_cannot_read(data_dir / name)
    assert any(r.name == "gateway.http" for r in caplog.records), "the request log was not captured"
    lines = logged(caplog)
    assert [n for n in needles if n in lines] == []


# Where an erased subject's random id stays by design: the ledger's hash chain, and complaints
# (counted for their campaign; their sealed text no longer opens). Its ref stays in a tombstone.
KEPT_AFTER_ERASURE = {"gateway.db:ledger.subject_id", "gateway.db:complaints.subject_id"}


def test_no_personal_data_after_erasure_and_restart(settings: Settings, data_dir: Path) -> None:
    """The erasure really happened, not only left nothing to find (the byte scans find nothing
    before it either): the subject's wrapped key and its rows are gone, after a restart too."""
    person = Person("email")
    app = create_app(settings)
    with TestClient(app) as client:
        runtime: Runtime = app.state.runtime
        headers = {"Authorization": f"Bearer {runtime.user_tokens.mint(person.user_id, system_clock())}"}
        _flow(client, headers, person)
        ref = runtime.store.pseudonyms.subject_ref(person.user_id)
        subject = runtime.store.directory.resolve(ref)
        assert subject is not None
        subject_id = subject.subject_id
        directory = readers(runtime)[DIRECTORY_FILE]
        query = "SELECT wrapped_key FROM subjects WHERE subject_id = ?"
        wrapped = bytes(directory.execute(query, (subject_id,)).fetchone()[0])
        # Control: before erasure the id is found where the subject's rows and key are.
        held = set(scan_tables(readers(runtime), [subject_id])[subject_id])
        assert held > KEPT_AFTER_ERASURE | {
            "subjects.db:subjects.subject_id",
            "gateway.db:devices.subject_id",
        }
        assert client.delete("/v1/me", headers=headers).status_code == 204
        assert scan_bytes(data_dir, person.needles()) == {}
    app = create_app(settings)
    with TestClient(app) as client:
        runtime = app.state.runtime
        databases = readers(runtime)
        assert set(scan_tables(databases, [subject_id]).get(subject_id, [])) == KEPT_AFTER_ERASURE
        assert scan_tables(databases, [ref]) == {ref: ["subjects.db:tombstones.subject_ref"]}
        assert not any(
            isinstance(value, bytes | memoryview) and wrapped in bytes(value)
            for _, _, value in stored_values(databases[DIRECTORY_FILE])
        ), "the wrapped data key is still stored"
        assert runtime.store.directory.status(ref) == "erased"
        assert runtime.store.directory.by_subject_id(subject_id) is None
        export = client.get("/v1/me/export", headers=headers).json()
        assert export["held"] is False
        assert (export["devices"], export["complaints"], export["location"]) == ([], [], None)
        assert scan_tables(databases, person.needles()) == {}
    assert scan_bytes(data_dir, person.needles()) == {}
