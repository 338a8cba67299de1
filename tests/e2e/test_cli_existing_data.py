"""The CLI never makes up a gateway where there is none, nor keys for data it did not write.

An auditor who mistypes the data dir must get a refusal, not a clean result from an empty
ledger the command has just created; a production data dir whose key store was forgotten must
not get fresh dev keys next to its databases. Each refusal is one line on stderr and exit 2,
`serve` included (its databases are opened before uvicorn starts, not in the lifespan).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import free_port

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("consent-gateway"))


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def _refused(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2 with one line on stderr naming each needle, nothing on stdout."""
    assert done.returncode == 2, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def made_gateway(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with both databases and its dev key store, made by `keys create` in an empty
    directory (where a command other than `serve` may still set a gateway up). Made once: each
    test gets a copy (`gateway_dir`), a second where a `keys create` process took one."""
    data = tmp_path_factory.mktemp("made") / "data"
    data.mkdir()
    made = _run({"CGW_DATA_DIR": str(data)}, "keys", "create", "--name", "setup", "--scope", "admin")
    assert made.returncode == 0, made.stderr
    assert {"keys.json", "gateway.db", "subjects.db"} <= {p.name for p in data.iterdir()}
    return data


@pytest.fixture
def gateway_dir(made_gateway: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(made_gateway, tmp_path / "data"))


@pytest.mark.parametrize("command", [("audit", "verify"), ("audit", "export", "--out", "OUT")])
def test_audit_on_a_mistyped_data_dir_creates_nothing(tmp_path: Path, command: tuple[str, ...]) -> None:
    typo = tmp_path / "x" / "typo"
    out = tmp_path / "export.jws"
    args = [str(out) if part == "OUT" else part for part in command]
    _refused(_run({"CGW_DATA_DIR": str(typo)}, *args), "gateway.db", "CGW_DATA_DIR")
    assert not (tmp_path / "x").exists()
    assert not out.exists()


def _tree(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


@pytest.mark.parametrize("where", ["missing", "holding other files"])
def test_no_command_but_serve_makes_a_gateway_in_a_mistyped_dir(tmp_path: Path, where: str) -> None:
    """A key or a dev token made in a new gateway would be no good on the real server, and a
    worker there would deliver nothing: each said nothing of it and exited 0 (the worker ran)."""
    if where == "missing":
        typo = tmp_path / "x" / "typo"
    else:
        typo = tmp_path / "srv"
        typo.mkdir()
        (typo / "notes.txt").write_text("the gateway's data is in ./data\n")
    before = _tree(tmp_path)
    commands = [("keys", "create", "--name", "n", "--scope", "admin"), ("token", "u1"), ("worker",)]
    env = {"CGW_DATA_DIR": str(typo)}
    running = [
        (
            args,
            subprocess.Popen(
                [CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ),
        )
        for args in commands
    ]
    problems = []
    for args, process in running:
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            problems.append(f"{' '.join(args)}: still running after 30 s")
            continue
        done = subprocess.CompletedProcess(args, process.returncode, out, err)
        try:
            _refused(done, "CGW_DATA_DIR", str(typo), "consent-gateway serve")
        except AssertionError as exc:
            problems.append(f"{' '.join(args)}: {exc}")
    assert not problems, "\n".join(problems)
    assert _tree(tmp_path) == before


def test_audit_on_an_empty_existing_dir_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _refused(_run({"CGW_DATA_DIR": str(empty)}, "audit", "verify"), "CGW_DATA_DIR")
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize(
    "command", [("token", "u1"), ("worker",), ("keys", "create", "--name", "n", "--scope", "admin")]
)
def test_a_key_store_set_but_missing_is_named_by_its_variable(
    gateway_dir: Path, tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Only `serve` named it: the others said "no key store at F", naming nothing to mend."""
    env = {"CGW_DATA_DIR": str(gateway_dir), "CGW_KEYSTORE_FILE": str(tmp_path / "missing.json")}
    line = _refused(_run(env, *command), "configuration error: CGW_KEYSTORE_FILE: no key store at")
    assert line.endswith("(when set, it must exist)")


def test_audit_without_the_key_store_creates_nothing(gateway_dir: Path, tmp_path: Path) -> None:
    (gateway_dir / "keys.json").rename(tmp_path / "elsewhere.json")
    before = sorted(p.name for p in gateway_dir.iterdir())
    for args in (("audit", "verify"), ("audit", "export", "--out", str(tmp_path / "e.jws"))):
        _refused(_run({"CGW_DATA_DIR": str(gateway_dir)}, *args), "CGW_KEYSTORE_FILE")
    assert sorted(p.name for p in gateway_dir.iterdir()) == before
    assert not (tmp_path / "e.jws").exists()


@pytest.mark.parametrize("command", [("token", "u1"), ("keys", "create", "--name", "n", "--scope", "admin")])
def test_no_dev_keys_for_existing_databases(
    gateway_dir: Path, tmp_path: Path, command: tuple[str, ...]
) -> None:
    (gateway_dir / "keys.json").rename(tmp_path / "production.json")
    _refused(_run({"CGW_DATA_DIR": str(gateway_dir)}, *command), "CGW_KEYSTORE_FILE", "gateway.db")
    assert not (gateway_dir / "keys.json").exists()


def test_serve_refuses_dev_keys_for_existing_databases(gateway_dir: Path, tmp_path: Path) -> None:
    (gateway_dir / "keys.json").rename(tmp_path / "production.json")
    env = {"CGW_DATA_DIR": str(gateway_dir), "CGW_PORT": "1", "CGW_WORKER_ENABLED": "false"}
    _refused(_run(env, "serve"), "CGW_KEYSTORE_FILE")
    assert not (gateway_dir / "keys.json").exists()


def test_a_subject_directory_alone_is_existing_data_too(gateway_dir: Path, tmp_path: Path) -> None:
    (gateway_dir / "keys.json").unlink()
    for name in ("gateway.db", "gateway.db-wal", "gateway.db-shm"):
        (gateway_dir / name).unlink(missing_ok=True)
    _refused(_run({"CGW_DATA_DIR": str(gateway_dir)}, "token", "u1"), "CGW_KEYSTORE_FILE", "subjects.db")
    assert not (gateway_dir / "keys.json").exists()


def test_the_wrong_key_store_is_one_line_for_every_command(gateway_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    assert _run({"CGW_DATA_DIR": str(other)}, "token", "u1").returncode == 0
    env = {
        "CGW_DATA_DIR": str(gateway_dir),
        "CGW_KEYSTORE_FILE": str(other / "keys.json"),
        "CGW_PORT": "1",  # never reached: the databases are opened before uvicorn starts
        "CGW_WORKER_ENABLED": "false",
    }
    for args in (
        ("keys", "create", "--name", "n", "--scope", "admin"),
        ("audit", "verify"),
        ("audit", "export", "--out", str(tmp_path / "e.jws")),
        ("serve",),
    ):
        _refused(_run(env, *args), "gateway.db", "CGW_KEYSTORE_FILE")


def test_audit_verify_still_reads_a_real_gateway(gateway_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(gateway_dir, copy)
    done = _run({"CGW_DATA_DIR": str(copy)}, "audit", "verify")
    assert done.returncode == 0, done.stderr
    assert '"ok":true' in done.stdout


ALL_COMMANDS = [
    ("serve",),
    ("worker",),
    ("keys", "create", "--name", "n", "--scope", "admin"),
    ("token", "u1"),
    ("audit", "verify"),
    ("audit", "export", "--out", "OUT"),
]


def _commands(tmp_path: Path, *, token: bool = True) -> list[list[str]]:
    return [
        [str(tmp_path / "e.jws") if part == "OUT" else part for part in command]
        for command in ALL_COMMANDS
        if token or command[0] != "token"
    ]


@pytest.mark.parametrize(("missing", "kept"), [("gateway.db", "subjects.db"), ("subjects.db", "gateway.db")])
def test_a_lost_database_is_refused_by_every_command_not_made_anew(
    gateway_dir: Path, tmp_path: Path, missing: str, kept: str
) -> None:
    """A new, empty gateway.db restarted the ledger at event 1 (`audit verify`: ok, 0 events); a new
    subjects.db lost every user's data key. Each was made without a word."""
    for suffix in ("", "-wal", "-shm"):
        (gateway_dir / f"{missing}{suffix}").unlink(missing_ok=True)
    env = {"CGW_DATA_DIR": str(gateway_dir), "CGW_PORT": "1", "CGW_WORKER_ENABLED": "false"}
    for args in _commands(tmp_path):
        _refused(_run(env, *args), "CGW_DATA_DIR", f"{kept} exists but {missing} is missing")
        assert not (gateway_dir / missing).exists(), args
    assert not (tmp_path / "e.jws").exists()


def _record_migration(data: Path, name: str, migration: str) -> None:
    from storage.connections import connect
    from storage.keys import KeyStore

    keys = KeyStore.load(data / "keys.json")
    conn = connect(data / name, keys.database_key if name == "gateway.db" else keys.directory_key)
    conn.execute("INSERT INTO _migrations VALUES (?, '2030-01-01T00:00:00+00:00')", (migration,))
    conn.close()


@pytest.mark.parametrize("name", ["gateway.db", "subjects.db"])
def test_a_database_a_newer_version_migrated_is_refused(gateway_dir: Path, tmp_path: Path, name: str) -> None:
    _record_migration(gateway_dir, name, "0099_from_the_future")
    env = {"CGW_DATA_DIR": str(gateway_dir), "CGW_PORT": "1", "CGW_WORKER_ENABLED": "false"}
    for args in _commands(tmp_path):  # `token` too: it printed a token the server would never see
        _refused(_run(env, *args), f"{name} was migrated by a newer version (0099_from_the_future)")
    assert not (tmp_path / "e.jws").exists()


def test_audit_commands_apply_no_pending_migration(tmp_path: Path) -> None:
    """Documented as creating nothing, `audit verify` migrated the files it was checking."""
    from storage.connections import connect
    from storage.keys import KeyStore
    from storage.migrations import DATA_MIGRATIONS, DIRECTORY_MIGRATIONS, migrate

    data = tmp_path / "data"
    keys = KeyStore.create(data / "keys.json")
    last = DATA_MIGRATIONS[-1][0]
    for name, key, steps in (
        ("gateway.db", keys.database_key, DATA_MIGRATIONS[:-1]),  # as a version before the last left it
        ("subjects.db", keys.directory_key, DIRECTORY_MIGRATIONS),
    ):
        conn = connect(data / name, key)
        migrate(conn, steps)
        conn.close()
    before = {p.name: p.read_bytes() for p in data.iterdir() if p.name.endswith(".db")}
    env = {"CGW_DATA_DIR": str(data)}
    for args in (("audit", "verify"), ("audit", "export", "--out", str(tmp_path / "e.jws"))):
        _refused(_run(env, *args), f"gateway.db has migrations pending ({last})", "consent-gateway serve")
    assert {p.name: p.read_bytes() for p in data.iterdir() if p.name.endswith(".db")} == before
    assert not (tmp_path / "e.jws").exists()


def test_a_key_store_lacking_a_key_of_the_data_keys_is_refused(gateway_dir: Path, tmp_path: Path) -> None:
    """`serve` started, /readyz said ready, and every request of an existing user answered 500."""
    import json
    from datetime import UTC, datetime

    from storage.keys import KeyStore
    from storage.store import Store

    store = Store(gateway_dir, KeyStore.load(gateway_dir / "keys.json"))
    try:
        store.directory.ensure("ref_1", datetime.now(UTC))
    finally:
        store.close()
    raw = json.loads((gateway_dir / "keys.json").read_text())
    raw["kek"], raw["kek_active"] = {"kek-2": raw["kek"]["kek-1"]}, "kek-2"
    (tmp_path / "other.json").write_text(json.dumps(raw))
    (tmp_path / "other.json").chmod(0o600)  # a key store as kept: one anyone may read is warned of
    env = {
        "CGW_DATA_DIR": str(gateway_dir),
        "CGW_KEYSTORE_FILE": str(tmp_path / "other.json"),
        "CGW_PORT": "1",  # never reached: the databases are opened before uvicorn starts
        "CGW_WORKER_ENABLED": "false",
    }
    for args in _commands(tmp_path, token=False):
        _refused(_run(env, *args), "lacks kek-1, which wraps data keys in subjects.db", "CGW_KEYSTORE_FILE")


def test_token_takes_a_data_dir_the_server_would_migrate(tmp_path: Path) -> None:
    """Refused ("migrations pending") for the data dir of the version before, which `serve` and
    `keys create` take, migrating it."""
    from storage.connections import connect
    from storage.keys import KeyStore
    from storage.migrations import DATA_MIGRATIONS, DIRECTORY_MIGRATIONS, migrate

    data = tmp_path / "data"
    keys = KeyStore.create(data / "keys.json")
    for name, key, steps in (
        ("gateway.db", keys.database_key, DATA_MIGRATIONS[:-1]),
        ("subjects.db", keys.directory_key, DIRECTORY_MIGRATIONS),
    ):
        conn = connect(data / name, key)
        migrate(conn, steps)
        conn.close()
    done = _run({"CGW_DATA_DIR": str(data)}, "token", "alice")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(".") == 2  # a JWT


# As root the file's mode is no obstacle: the command runs without the capabilities that pass it.
WITHOUT_OVERRIDES = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
AS_AN_OWNER = WITHOUT_OVERRIDES if os.geteuid() == 0 else []


@pytest.mark.skipif(bool(AS_AN_OWNER) and shutil.which("setpriv") is None, reason="needs setpriv as root")
def test_serve_refuses_a_database_it_cannot_write(gateway_dir: Path) -> None:
    """SQLite opens a file it may not write read-only, without a word: `serve` started, answered
    `/readyz` ready, and its first write was a 503 blaming a full disk."""
    for path in gateway_dir.iterdir():
        if path.name.startswith("gateway.db"):
            path.chmod(0o400)
    env = {"CGW_DATA_DIR": str(gateway_dir), "CGW_PORT": str(free_port()), "CGW_WORKER_ENABLED": "false"}
    done = subprocess.run([*AS_AN_OWNER, CLI, "serve"], env=env, capture_output=True, text=True, timeout=60)
    _refused(done, "CGW_DATA_DIR", "gateway.db cannot be written (read-only)")


@pytest.mark.skipif(bool(AS_AN_OWNER) and shutil.which("setpriv") is None, reason="needs setpriv as root")
@pytest.mark.parametrize("what", ["files", "directory"])
@pytest.mark.parametrize(
    "command", [("keys", "create", "--name", "a", "--scope", "admin"), ("audit", "export", "--out", "OUT")]
)
def test_other_commands_name_the_data_dir_they_cannot_write(
    gateway_dir: Path, tmp_path: Path, command: tuple[str, ...], what: str
) -> None:
    """Only `serve` checked: a read-only `gateway.db` was "the disk is full or refused the write",
    a read-only directory "cannot open gateway.db: unable to open database file", neither naming
    the data dir, nor the files as read-only."""
    if what == "files":
        for path in gateway_dir.iterdir():
            if path.name.startswith("gateway.db"):
                path.chmod(0o400)
    else:
        gateway_dir.chmod(0o500)
    args = [str(tmp_path / "export.jws") if part == "OUT" else part for part in command]
    env = {"CGW_DATA_DIR": str(gateway_dir)}
    try:
        done = subprocess.run([*AS_AN_OWNER, CLI, *args], env=env, capture_output=True, text=True, timeout=60)
    finally:
        gateway_dir.chmod(0o700)
    line = _refused(done, "CGW_DATA_DIR")
    assert "read-only" in line if what == "files" else "cannot be written" in line, line


@pytest.mark.parametrize(
    "command", [("token", "alice"), ("keys", "create", "--name", "a", "--scope", "admin")]
)
def test_any_command_that_makes_dev_keys_says_so_loudly_once(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Only `serve` said so, in its banner: keys made by `token` or `keys create` in an empty dir
    were announced by one JSON log line, and the `serve` after them, finding the key store,
    said nothing."""
    data = tmp_path / "data"
    data.mkdir()
    env = {"CGW_DATA_DIR": str(data)}
    first = _run(env, *command)
    assert first.returncode == 0, first.stderr
    assert f"DEVELOPMENT KEYS were just created in {data / 'keys.json'}" in first.stderr
    assert "DEVELOPMENT" not in first.stdout  # what the command prints stays the token or key alone
    again = _run(env, *command)
    assert again.returncode == 0, again.stderr
    assert "DEVELOPMENT KEYS" not in again.stderr


def test_serve_with_a_key_store_it_refuses_makes_no_data_dir(tmp_path: Path) -> None:
    malformed = tmp_path / "keys.pem"
    malformed.write_text("not a key store\n")
    data = tmp_path / "data"
    env = {"CGW_DATA_DIR": str(data), "CGW_KEYSTORE_FILE": str(malformed), "CGW_PORT": str(free_port())}
    _refused(_run(env, "serve"), "malformed")
    assert not data.exists()


@pytest.mark.skipif(bool(AS_AN_OWNER) and shutil.which("setpriv") is None, reason="needs setpriv as root")
def test_a_data_dir_the_command_may_not_write_is_named_as_given(tmp_path: Path) -> None:
    """`keys.json: Permission denied` named a file, not the setting to mend."""
    data = tmp_path / "data"
    data.mkdir(mode=0o500)
    done = subprocess.run(
        [*AS_AN_OWNER, CLI, "token", "alice", "--data-dir", str(data)],
        env={}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    _refused(done, "configuration error: --data-dir: ", "Permission denied")


@pytest.mark.skipif(bool(AS_AN_OWNER) and shutil.which("setpriv") is None, reason="needs setpriv as root")
@pytest.mark.parametrize("command", [("audit", "verify"), ("keys", "list"), ("token", "alice")])
def test_a_data_dir_the_command_may_not_search_is_named_as_given(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """A data dir `serve` made (0700) asked about by another user: whether the key store was
    there was asked before the one-line refusals, and every command ended in a traceback."""
    data = tmp_path / "data"
    data.mkdir()  # empty: the first command sets a gateway up in it
    made = _run({"CGW_DATA_DIR": str(data)}, "token", "alice")
    assert made.returncode == 0, made.stderr
    data.chmod(0o600)  # readable, not searchable: no file inside can even be looked at
    try:
        done = subprocess.run(
            [*AS_AN_OWNER, CLI, *command, "--data-dir", str(data)],
            env={}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        data.chmod(0o700)
    _refused(done, "configuration error: --data-dir: ", "Permission denied")
