"""Everything the gateway writes in its data dir is private to its user, whatever the umask.

The key store was 0600, but the databases, their -wal/-shm files and the data dir itself
followed the umask (0644/0755 under the usual 022): readable by every local user. The
databases are encrypted, yet their sizes and write times are not, and nothing else on the
machine needs them. The CLI sets umask 077, and the data dir is made 0700.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from support import serve_process

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("consent-gateway"))


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    """The usual umask for the processes started inside (they inherit it)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _shared(root: Path) -> dict[str, str]:
    """Each path under `root`, and `root` itself, that its group or others may use."""
    paths = [root, *root.rglob("*")]
    return {
        str(p.relative_to(root.parent)): oct(p.stat().st_mode & 0o777)
        for p in paths
        if p.stat().st_mode & 0o077
    }


def test_serve_writes_only_private_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with _umask(0o022), serve_process(data, tmp_path / "server.stderr", {"CGW_LOG_LEVEL": "info"}) as server:
        token = server.cli("token", "private-files-user")
        assert token.returncode == 0, token.stderr
        answer = httpx.put(
            f"{server.base}/v1/me/consents/marketing",
            json={"granted": True, "notice_version": "2026-11"},
            headers={"Authorization": f"Bearer {token.stdout.strip()}"},
            timeout=10.0,
        )
        assert answer.status_code == 200, answer.text
        names = {p.name for p in data.iterdir()}
        assert {"keys.json", "gateway.db", "subjects.db", "gateway.db-wal", "subjects.db-wal"} <= names
        assert _shared(data) == {}, "while serving"
        server.stop()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert _shared(data) == {}, "after a clean stop"


def test_serve_in_a_fresh_nested_data_dir_makes_it_private(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"
    with _umask(0o022), serve_process(data, tmp_path / "server.stderr", {}) as server:
        server.stop()
    assert {"keys.json", "gateway.db", "subjects.db"} <= {p.name for p in data.iterdir()}
    assert _shared(tmp_path / "new") == {}


def test_keys_create_in_an_empty_data_dir_writes_private_files(tmp_path: Path) -> None:
    """`keys create` no longer creates a data dir (only `serve` does), but sets a gateway up in an
    empty one: its files are as private as serve's."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    with _umask(0o022):
        done = subprocess.run(
            [CLI, "keys", "create", "--name", "n", "--scope", "admin"],
            env={"CGW_DATA_DIR": str(data)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert {"keys.json", "gateway.db", "subjects.db"} <= {p.name for p in data.iterdir()}
    assert _shared(data) == {}
