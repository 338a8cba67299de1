"""`audit export --out` is opened before the ledger is touched.

The export checkpoints the ledger (a signed row in gateway.db) before it has anything to write;
an unwritable `--out` used to be found only after that, as a FileNotFoundError traceback. Now it
is one line naming --out, exit 2, and the ledger is as it was.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from storage.keys import KeyStore
from storage.store import Store

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("consent-gateway"))


def _run(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"CGW_DATA_DIR": str(data)}
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def _checkpoints(data: Path) -> int:
    store = Store(data, KeyStore.load(data / "keys.json"))
    try:
        (count,) = store.data.reader().execute("SELECT count(*) FROM checkpoints").fetchone()
    finally:
        store.close()
    return int(count)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    made = _run(data, "keys", "create", "--name", "auditor", "--scope", "audit:read")
    assert made.returncode == 0, made.stderr
    return data


def test_an_unwritable_out_is_one_line_before_any_checkpoint(data: Path, tmp_path: Path) -> None:
    before = _checkpoints(data)
    for out in (tmp_path / "nonexistent" / "dir" / "x.jws", tmp_path):
        done = _run(data, "audit", "export", "--out", str(out))
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr[-2000:]
        assert "--out" in lines[0]
        assert str(out) in lines[0]
    assert _checkpoints(data) == before
    assert not (tmp_path / "nonexistent").exists()


def test_a_refused_export_leaves_no_empty_out_file(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.jws"
    done = _run(
        data,
        "audit",
        "export",
        "--from",
        "2026-11-23T10:00:00Z",
        "--to",
        "2026-11-22T10:00:00Z",
        "--out",
        str(out),
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert not out.exists()


def test_the_export_is_written_private(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "e.jws"
    out.write_text("an older, longer export that must not leave a tail behind\n" * 10)
    done = _run(data, "audit", "export", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_text().count(".") == 2
    assert out.read_text().endswith("\n")
    assert _run(data, "audit", "verify", "--export", str(out)).returncode == 0
    fresh = tmp_path / "fresh.jws"
    assert _run(data, "audit", "export", "--out", str(fresh)).returncode == 0
    assert fresh.stat().st_mode & 0o777 == 0o600


def test_an_export_into_a_pipe(data: Path, tmp_path: Path) -> None:
    """`--out /dev/stdout | ...` failed with "Invalid argument" (truncating a pipe), after signing."""
    done = _run(data, "audit", "export", "--out", "/dev/stdout")  # stdout is a pipe here
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count(".") == 2
    assert done.stdout.endswith("\n")
    saved = tmp_path / "piped.jws"
    saved.write_text(done.stdout)
    assert _run(data, "audit", "verify", "--export", str(saved)).returncode == 0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_failed_write_is_one_line_naming_out(data: Path) -> None:
    done = _run(data, "audit", "export", "--out", "/dev/full")
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines() == ["consent-gateway: --out /dev/full: No space left on device"]
