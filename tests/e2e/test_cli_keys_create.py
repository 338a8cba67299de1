"""`keys create` gives the key every scope asked for, however the flags were written.

`--scope a --scope b` used to keep only `b` (argparse's `nargs="+"` replaces the list on each
repeat), and the key was made without a word about the scope it lost.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from support import free_port

from storage.connections import connect
from storage.keys import KeyStore

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("consent-gateway"))


@pytest.mark.parametrize(
    "scope_flags",
    [
        ["--scope", "pushes:write", "--scope", "campaigns:write", "--scope", "campaigns:read"],
        ["--scope", "pushes:write", "campaigns:write", "--scope", "campaigns:read"],
        ["--scope", "pushes:write", "campaigns:write", "campaigns:read"],
    ],
    ids=["repeated", "mixed", "one flag"],
)
def test_every_scope_given_is_the_keys(tmp_path: Path, scope_flags: list[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    done = subprocess.run(
        [CLI, "keys", "create", "--name", "svc", *scope_flags, "--data-dir", str(data)],
        env={},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("cgw_")
    assert ", scopes pushes:write campaigns:write campaigns:read:" in done.stderr, done.stderr[-2000:]


def test_scopes_no_key_may_hold_together_are_one_line_not_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    done = subprocess.run(
        [CLI, "keys", "create", "--name", "both", "--scope", "admin", "audit:read", "--data-dir", str(data)],
        env={},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("consent-gateway: --scope: ")
    assert "`admin` and `audit:read` are never given to one key" in done.stderr


@pytest.mark.parametrize("name", ["", "x" * 5000, "evil\nname", "<script>", "trailing\n", "   "])
def test_a_name_the_api_refuses_is_refused_here_too(tmp_path: Path, name: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    done = subprocess.run(
        [CLI, "keys", "create", "--name", name, "--scope", "campaigns:read", "--data-dir", str(data)],
        env={},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr[-2000:]
    assert done.stderr.startswith("consent-gateway: --name: 1-100 letters, digits, spaces")
    assert list(data.iterdir()) == []  # refused before a gateway was set up there


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env={}, capture_output=True, text=True, timeout=60)


def test_keys_list_shows_every_key_and_no_secret(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    Path(data).mkdir()
    made = [_cli("keys", "create", "--name", name, "--scope", scope, "--data-dir", data) for name, scope in (
        ("ops", "admin"), ("payments svc", "pushes:write"))]  # fmt: skip
    assert [m.returncode for m in made] == [0, 0], [m.stderr for m in made]

    listed = _cli("keys", "list", "--data-dir", data)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    ids = [m.stdout.removeprefix("cgw_").split("_")[0] for m in made]
    assert lines == [f"{ids[0]}  live  admin  ops", f"{ids[1]}  live  pushes:write  payments svc"]
    # No secret: all of it after `cgw_<id>_`, which may hold `_` itself (its last piece alone, a
    # few characters at times, was found in the list by chance).
    assert all(m.stdout.strip().split("_", 2)[2] not in listed.stdout for m in made)


def test_keys_list_sets_nothing_up(tmp_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    listed = _cli("keys", "list", "--data-dir", str(empty))
    assert listed.returncode == 2, listed.stderr
    assert "Traceback" not in listed.stderr
    assert list(empty.iterdir()) == []


def test_a_data_dir_another_process_is_writing_to_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """Another process holding the write lock (a long write of a running gateway): the command
    printed a traceback (StorageBusyError). Nor does a migrated data dir make it wait for the
    lock at start: migrations all recorded, it writes nothing there."""
    data = tmp_path / "data"
    data.mkdir()
    first = _cli("keys", "create", "--name", "ops", "--scope", "admin", "--data-dir", str(data))
    assert first.returncode == 0, first.stderr[-2000:]
    holder = connect(data / "gateway.db", KeyStore.load(data / "keys.json").database_key)
    holder.execute("BEGIN IMMEDIATE")
    try:
        refused = _cli("keys", "create", "--name", "svc", "--scope", "pushes:write", "--data-dir", str(data))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (refused.returncode, refused.stdout) == (2, "")
    assert "Traceback" not in refused.stderr
    assert refused.stderr.startswith("consent-gateway: the data dir is busy"), refused.stderr[-2000:]
    listed = _cli("keys", "list", "--data-dir", str(data))
    assert [line.split()[-1] for line in listed.stdout.splitlines()] == ["ops"]


def test_serve_starts_on_a_data_dir_another_process_holds_the_write_lock_of(tmp_path: Path) -> None:
    """`serve` checks at start that its files can be written (a read-only file is refused). That
    check met another process's write lock, held past the busy timeout (5 s), as a refusal, and
    exited 2 where the start otherwise waits for the lock. The lock is held 7 s here."""
    data = tmp_path / "data"
    data.mkdir()
    made = _cli("keys", "create", "--name", "ops", "--scope", "admin", "--data-dir", str(data))
    assert made.returncode == 0, made.stderr[-2000:]
    holder = connect(data / "gateway.db", KeyStore.load(data / "keys.json").database_key)
    holder.execute("BEGIN IMMEDIATE")

    def release() -> None:
        holder.execute("ROLLBACK")
        holder.close()

    released = threading.Timer(7.0, release)
    port = free_port()
    env = {**os.environ, "CGW_DATA_DIR": str(data), "CGW_PORT": str(port), "CGW_WORKER_ENABLED": "false"}
    server = subprocess.Popen(
        [CLI, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    released.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[1][-2000:]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                    break
            assert time.monotonic() < deadline, "serve did not answer /healthz in 60 s"
            time.sleep(0.2)
    finally:
        released.join()
        server.terminate()
        server.communicate(timeout=30)


@pytest.mark.parametrize("stdout", ["full", "closed"])
def test_a_key_whose_secret_cannot_be_written_is_not_made(tmp_path: Path, stdout: str) -> None:
    """`> /dev/full` left a live key whose secret nobody saw, and with standard output closed
    (`>&-`) the command even said it was made: a key no one can use, that someone must revoke."""
    data = tmp_path / "data"
    data.mkdir()
    command = [CLI, "keys", "create", "--name", "lost", "--scope", "pushes:write", "--data-dir", str(data)]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            command,
            env={},
            stdout=full if stdout == "full" else None,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            # The shell's `>&-`: the child starts with no file descriptor 1.
            preexec_fn=(lambda: os.close(1)) if stdout == "closed" else None,
        )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "no key was made" in done.stderr or "standard output is closed" in done.stderr, done.stderr
    assert "store it now" not in done.stderr
    listed = subprocess.run(
        [CLI, "keys", "list", "--data-dir", str(data)], env={}, capture_output=True, text=True, timeout=60
    )
    # Refused before a gateway was set up when standard output is closed: there is nothing to list.
    assert listed.returncode == 0 or "no gateway.db" in listed.stderr, listed.stderr[-2000:]
    assert "lost" not in listed.stdout
