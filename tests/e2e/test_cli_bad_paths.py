"""A bad path or host is one line naming the variable and exit 2, never a traceback.

Each case is what an operator can type: a data dir that is a file, under a file, or somewhere
that cannot be created; a key store that is a directory; a host name that is not one.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("consent-gateway"))
KEYS_CREATE = ("keys", "create", "--name", "n", "--scope", "admin")


def _cases(tmp: Path) -> list[tuple[str, dict[str, str], tuple[str, ...], str]]:
    afile = tmp / "afile"
    return [
        ("data dir is a file", {"CGW_DATA_DIR": str(afile)}, KEYS_CREATE, "CGW_DATA_DIR"),
        ("data dir under a file", {"CGW_DATA_DIR": str(afile / "sub")}, ("audit", "verify"), "CGW_DATA_DIR"),
        (
            "data dir under a file, token",
            {"CGW_DATA_DIR": str(afile / "sub")},
            ("token", "u"),
            "CGW_DATA_DIR",
        ),
        ("data dir cannot be created", {"CGW_DATA_DIR": "/proc/nope"}, ("token", "u"), "CGW_DATA_DIR"),
        ("data dir cannot be created, worker", {"CGW_DATA_DIR": "/proc/nope"}, ("worker",), "CGW_DATA_DIR"),
        (
            "key store is a directory",
            {"CGW_DATA_DIR": str(tmp / "d1"), "CGW_KEYSTORE_FILE": str(tmp)},
            ("token", "u"),
            "CGW_KEYSTORE_FILE",
        ),
        ("default key store is a directory", {"CGW_DATA_DIR": str(tmp / "d2")}, ("token", "u"), "keys.json"),
        ("host", {"CGW_DATA_DIR": str(tmp / "d3"), "CGW_HOST": "not..a..host"}, ("serve",), "CGW_HOST"),
        ("host with a space", {"CGW_DATA_DIR": str(tmp / "d4"), "CGW_HOST": "a b"}, ("serve",), "CGW_HOST"),
        (
            "not an address",
            {"CGW_DATA_DIR": str(tmp / "d5"), "CGW_HOST": "256.1.1.1"},
            ("serve",),
            "CGW_HOST",
        ),
        ("five numbers", {"CGW_DATA_DIR": str(tmp / "d6")}, ("serve", "--host", "0.0.0.0.0"), "--host"),
        # Well formed, but no address of this machine: found by binding, before anything is made.
        (
            "not this machine's",
            {"CGW_DATA_DIR": str(tmp / "d7"), "CGW_HOST": "192.0.2.1"},
            ("serve",),
            "CGW_HOST",
        ),
    ]


def test_bad_paths_and_hosts_are_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a directory\n")
    (tmp_path / "d2" / "keys.json").mkdir(parents=True)
    running = [
        (
            label,
            needle,
            subprocess.Popen(
                [CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ),
        )
        for label, env, args, needle in _cases(tmp_path)
    ]
    problems = []
    for label, needle, process in running:
        out, err = process.communicate(timeout=60)
        lines = err.splitlines()
        if process.returncode != 2:
            problems.append(f"{label}: exit {process.returncode}, stderr {err[-1500:]!r}")
        elif len(lines) != 1 or needle not in lines[0]:
            problems.append(f"{label}: expected one line naming {needle}, got {err[-1500:]!r}")
        if out:
            problems.append(f"{label}: printed {out!r} on stdout")
    assert not problems, "\n".join(problems)
    assert (tmp_path / "afile").read_text() == "not a directory\n"
    assert not (tmp_path / "d1").exists()
    assert not any((tmp_path / d).exists() for d in ("d5", "d6", "d7"))


def test_a_port_in_use_is_one_line_naming_it_before_anything_is_made(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = subprocess.run(
            [CLI, "serve", "--port", port, "--data-dir", str(tmp_path / "data")],
            env={},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr[-1500:]
    assert done.stderr.splitlines() == [
        f"consent-gateway: configuration error: --port: cannot listen on 127.0.0.1 port {port}: "
        "Address already in use"
    ]
    assert not (tmp_path / "data").exists()
