"""`POST /v1/admin/keys/rotate-encryption` with key-encryption keys an operator named in their own
way. Such a key store loads and serves; rotating answered 500, parsing `primary` as `kek-<n>`."""

from __future__ import annotations

import base64
import errno
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FakeClock
from litestar import Litestar
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from storage.connections import Connection
from storage.keys import KeyStore


def _key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


@pytest.mark.parametrize(
    ("ids", "rotated"),
    [
        (["primary"], "kek-1"),
        (["kek-1", "hsm-2024"], "kek-2"),
        (["kek-7", "kek-12x", "kek-\u0663\u0663", "kek-" + "9" * 30, "kek-"], "kek-8"),
        (["kek-0009"], "kek-10"),
    ],
)
def test_rotation_takes_the_next_kek_number_whatever_else_is_named(
    settings: Settings, clock: FakeClock, data_dir: Path, ids: list[str], rotated: str
) -> None:
    data_dir.mkdir(mode=0o700)
    path = data_dir / "keys.json"
    KeyStore.create(path)
    stored = json.loads(path.read_text())
    stored["kek"] = {kid: _key() for kid in ids}
    stored["kek_active"] = ids[0]
    path.write_text(json.dumps(stored))

    with TestClient(create_app(settings, clock)) as client:
        runtime: Runtime = client.app.state.runtime
        _, secret = runtime.api_keys.create_sync("operator", ("admin",))
        admin = {"Authorization": f"Bearer {secret}"}
        alice = {"Authorization": f"Bearer {runtime.user_tokens.mint('alice', runtime.clock())}"}
        granted = client.put(
            "/v1/me/consents/marketing", headers=alice, json={"granted": True, "notice_version": "v1"}
        )
        assert granted.status_code == 200, granted.text  # a data key wrapped under the operator's key

        answer = client.post("/v1/admin/keys/rotate-encryption", headers=admin)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"active_kek_id": rotated, "rewrapped": 1}
        again = client.post("/v1/admin/keys/rotate-encryption", headers=admin).json()
        assert again["active_kek_id"] == f"kek-{int(rotated.removeprefix('kek-')) + 1}"
        assert client.get("/v1/me/preferences", headers=alice).status_code == 200  # still opens

    assert set(json.loads(path.read_text())["kek"]) == {*ids, rotated, again["active_kek_id"]}


def test_a_rotation_the_key_store_cannot_take_is_refused_and_changes_nothing(
    client: TestClient[Litestar], runtime: Runtime, as_key: Callable[..., dict[str, str]]
) -> None:
    """A key store on a read-only mount, or a full disk: the new key cannot be written. That was
    a bare 500; it is a 409 saying so, with the key store and every wrap as they were. Here the
    rewrite's temporary file is a directory, which refuses root too."""
    admin = as_key("admin")
    path = runtime.keys.path
    before = path.read_bytes()
    blocker = path.with_name(path.name + ".tmp")
    blocker.mkdir()
    try:
        refused = client.post("/v1/admin/keys/rotate-encryption", headers=admin)
    finally:
        blocker.rmdir()
    assert refused.status_code == 409, refused.text
    assert "the key store cannot be written (Is a directory): nothing was rotated" in refused.json()["detail"]
    assert path.read_bytes() == before
    assert runtime.keys.keyring.active == json.loads(before)["kek_active"]
    rotated = client.post("/v1/admin/keys/rotate-encryption", headers=admin)
    assert rotated.status_code == 200, rotated.text


def test_a_rotation_refused_by_a_full_disk_leaves_no_part_written_file(
    client: TestClient[Litestar],
    runtime: Runtime,
    as_key: Callable[..., dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk filled as the new key store was written: refused 409 as above, and its part-written
    temporary file was left beside the key store."""
    admin = as_key("admin")
    path = runtime.keys.path
    before = path.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full)
        refused = client.post("/v1/admin/keys/rotate-encryption", headers=admin)
    assert refused.status_code == 409, refused.text
    assert "No space left on device" in refused.json()["detail"]
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name)) == [path.name]


def test_a_subject_made_while_a_rotation_runs_is_wrapped_under_the_new_key(
    client: TestClient[Litestar],
    runtime: Runtime,
    as_key: Callable[..., dict[str, str]],
    as_user: Callable[[str], dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new subject's key was wrapped before its insert waited for the write lock; a rotation
    whose pass went by meanwhile answered 200 and left that key under the old key-encryption key
    (a leaked key still protecting it; a start refused once the old key was removed). Here the
    insert is held until the rotation has answered."""
    consent = {"granted": True, "notice_version": "v1"}
    for i in range(3):
        assert (
            client.put("/v1/me/consents/marketing", json=consent, headers=as_user(f"old-{i}")).status_code
            == 200
        )
    writer = runtime.store._directory_db.writer
    run_sync = writer.run_sync
    waiting, rotated = threading.Event(), threading.Event()

    def held_insert(unit: Callable[..., object]) -> object:
        if getattr(unit, "__name__", "") == "insert" and not waiting.is_set():
            waiting.set()
            assert rotated.wait(10)
        return run_sync(unit)

    monkeypatch.setattr(writer, "run_sync", held_insert)
    answers: list[int] = []
    newcomer = threading.Thread(
        target=lambda: answers.append(
            client.put("/v1/me/consents/marketing", json=consent, headers=as_user("newcomer")).status_code
        )
    )
    newcomer.start()
    try:
        assert waiting.wait(10)
        rotation = client.post("/v1/admin/keys/rotate-encryption", headers=as_key("admin"))
    finally:
        rotated.set()
        newcomer.join(10)
    assert rotation.status_code == 200, rotation.text
    assert answers == [200]
    keyring = runtime.keys.keyring
    wraps = [w for (w,) in runtime.store._directory_db.reader().execute("SELECT wrapped_key FROM subjects")]
    assert len(wraps) == 4
    assert {keyring.key_id_of(w) for w in wraps} == {keyring.active}


def test_a_rotation_cut_short_is_finished_at_the_next_start(
    settings: Settings, clock: FakeClock, data_dir: Path
) -> None:
    """The new key made active, the process gone before it re-wrapped (a crash): data keys stayed
    wrapped only under the key rotated away from, the one a leak is rotated away from, and the
    admin log said nothing. The next start finishes it and logs it as the gateway's."""
    with TestClient(create_app(settings, clock)) as client:
        runtime: Runtime = client.app.state.runtime
        alice = {"Authorization": f"Bearer {runtime.user_tokens.mint('alice', runtime.clock())}"}
        granted = client.put(
            "/v1/me/consents/marketing", headers=alice, json={"granted": True, "notice_version": "v1"}
        )
        assert granted.status_code == 200, granted.text  # a data key wrapped under kek-1
        assert runtime.keys.add_kek() == "kek-2"  # and nothing after it: cut short

    with TestClient(create_app(settings, clock)) as client:
        runtime = client.app.state.runtime
        _, secret = runtime.api_keys.create_sync("auditor", ("audit:read",))
        entries: list[dict[str, object]] = []
        deadline = time.monotonic() + 10
        while not entries and time.monotonic() < deadline:
            time.sleep(0.05)
            log = client.get("/v1/audit/admin-log", headers={"Authorization": f"Bearer {secret}"})
            assert log.status_code == 200, log.text
            entries = [e for e in log.json()["entries"] if e["action"] == "encryption_key.rotated"]
        assert [(e["actor"], e["target"], e["detail"]) for e in entries] == [
            ("gateway", "kek-2", {"rewrapped": 1})
        ]
        assert not runtime.store.rotation_unfinished()
        listed = runtime.store._directory_db.reader().execute("SELECT prefix FROM wrapping_keys").fetchall()
        assert [bytes(p)[2:].decode() for (p,) in listed] == ["kek-2"]


def test_a_data_key_that_does_not_open_is_a_conflict_not_a_500(settings: Settings, clock: FakeClock) -> None:
    """One subject's wrapped key damaged (a byte flipped): the pass ends there. It was a 500 with
    nothing said; it is a 409 naming what happened and what is left, and the others still open."""
    with TestClient(create_app(settings, clock)) as client:
        runtime: Runtime = client.app.state.runtime
        _, secret = runtime.api_keys.create_sync("operator", ("admin",))
        users = {name: {"Authorization": f"Bearer {runtime.user_tokens.mint(name, runtime.clock())}"}
                 for name in ("alice", "bob")}  # fmt: skip
        for headers in users.values():
            granted = client.put(
                "/v1/me/consents/marketing", headers=headers, json={"granted": True, "notice_version": "v1"}
            )
            assert granted.status_code == 200, granted.text
        bob = client.get("/v1/me/preferences", headers=users["bob"]).json()["subject_ref"]

        def damage(conn: Connection) -> None:
            (wrapped,) = conn.execute(
                "SELECT wrapped_key FROM subjects WHERE subject_ref = ?", (bob,)
            ).fetchone()
            flipped = bytes(wrapped)[:-1] + bytes([bytes(wrapped)[-1] ^ 1])
            conn.execute("UPDATE subjects SET wrapped_key = ? WHERE subject_ref = ?", (flipped, bob))

        runtime.store._directory_db.writer.run_sync(damage)
        answer = client.post(
            "/v1/admin/keys/rotate-encryption", headers={"Authorization": f"Bearer {secret}"}
        )
        assert answer.status_code == 409, answer.text
        assert answer.json()["detail"].startswith(
            "kek-2 is active, but a data key in subjects.db does not open"
        )
        assert client.get("/v1/me/preferences", headers=users["alice"]).status_code == 200
