"""One page of gateway.db whose bits rotted on disk, met by a read over HTTP: SQLCipher's check of
that page fails (SQLITE_CORRUPT), and its codec kept the error on the read connection, so every
later read of a page not yet in that connection's cache answered 500 too, other pushes included,
until a restart. Now the request that met it answers 500 and the readers are replaced: only what
needs the damaged page fails. The page is found, not guessed: the one a single push's read needs
and no other push's does, tried on copies of the file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import sqlcipher3
from conftest import FakeClock
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.clock import system_clock
from gateway.settings import Settings
from storage.db import connect
from storage.store import DATA_FILE

PAGE = 4096
PUSHES = 8


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


def _rot(path: Path, page: int) -> None:
    with open(path, "r+b") as f:
        f.seek((page - 1) * PAGE + 200)
        byte = f.read(1)
        f.seek((page - 1) * PAGE + 200)
        f.write(bytes([byte[0] ^ 1]))


def _page_only_for(path: Path, key: bytes, victim: str, others: list[str], work: Path) -> int:
    """A page whose damage fails the read of `victim` and of none of `others`."""
    for page in range(2, path.stat().st_size // PAGE + 1):
        copy = work / f"page-{page}.db"
        shutil.copyfile(path, copy)
        _rot(copy, page)
        if not _reads(copy, key, victim) and all(_reads(copy, key, other) for other in others):
            return page
    raise AssertionError("no page holds the victim's row alone")


def test_a_corrupt_page_fails_the_reads_that_need_it_not_every_later_read(
    settings: Settings, clock: FakeClock, tmp_path: Path
) -> None:
    with TestClient(create_app(settings, clock)) as client:
        runtime = client.app.state.runtime
        _, secret = runtime.api_keys.create_sync("corrupt page test", ("pushes:write",))
        service = {"Authorization": f"Bearer {secret}"}
        push_ids = []
        for i in range(PUSHES):
            user = {"Authorization": f"Bearer {runtime.user_tokens.mint(f'rot-{i}', system_clock())}"}
            device = {"platform": "fcm", "token": f"fcm-token-rot-{i}"}
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
    assert not os.path.exists(f"{path}-wal") or os.path.getsize(f"{path}-wal") == 0  # all in the file
    victim, others = push_ids[0], push_ids[1:]
    _rot(path, _page_only_for(path, key, victim, others, tmp_path))

    with TestClient(create_app(settings, clock)) as client:
        assert client.get(f"/v1/pushes/{victim}", headers=service).status_code == 500
        for push_id in others:
            answer = client.get(f"/v1/pushes/{push_id}", headers=service)
            assert answer.status_code == 200, (push_id, answer.text)
            assert answer.json()["push_id"] == push_id
        assert client.get(f"/v1/pushes/{victim}", headers=service).status_code == 500  # still damaged
