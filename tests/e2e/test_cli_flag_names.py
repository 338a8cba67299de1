"""A refused setting is reported under the name the user typed: `--data-dir` for the flag,
`CGW_DATA_DIR` for the variable.

The data dir is checked in three places: when the settings are read, when a command creates it,
and when an audit command finds no gateway there. Only the first used to know about the flag, so
`audit verify --data-dir typo/` blamed a variable the user had never set. An empty flag used to
be a path too, the current directory, where `token` then created dev keys.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("consent-gateway"))
FLAG, VAR = "--data-dir", "CGW_DATA_DIR"


def _refused(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """The one line of a run that must end with exit status 2."""
    done = subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    return lines[0]


# (command, data dir) pairs: a dir that is no gateway's, and one that cannot be created.
PROBLEMS = [
    (["audit", "verify"], "empty"),
    (["audit", "export", "--out", "out.jws"], "empty"),
    (["token", "u1"], "/proc/nope"),
    (["worker"], "/proc/nope"),
    (["keys", "create", "--name", "n", "--scope", "admin"], "/proc/nope"),
]
IDS = [f"{' '.join(args[:2])} {where}" for args, where in PROBLEMS]


@pytest.mark.parametrize(("args", "where"), PROBLEMS, ids=IDS)
def test_a_data_dir_given_by_the_flag_is_named_by_the_flag(
    tmp_path: Path, args: list[str], where: str
) -> None:
    (tmp_path / "empty").mkdir()
    line = _refused([*args, FLAG, where], {}, tmp_path)
    assert f"{FLAG}: " in line
    assert VAR not in line


@pytest.mark.parametrize(("args", "where"), PROBLEMS, ids=IDS)
def test_a_data_dir_from_the_variable_is_named_by_the_variable(
    tmp_path: Path, args: list[str], where: str
) -> None:
    (tmp_path / "empty").mkdir()
    line = _refused(args, {VAR: where}, tmp_path)
    assert f"{VAR}: " in line
    assert FLAG not in line


@pytest.mark.parametrize(
    "args",
    [
        ["token", "u1", FLAG, ""],
        ["serve", FLAG, ""],
        ["audit", "verify", FLAG, ""],
        ["serve", "--host", ""],
        ["serve", "--port", ""],
    ],
    ids=lambda args: " ".join(args[:-1]),
)
def test_an_empty_flag_is_refused_not_taken_for_the_current_directory(
    tmp_path: Path, args: list[str]
) -> None:
    line = _refused(args, {"CGW_WORKER_ENABLED": "false"}, tmp_path)
    assert f"{args[-2]}: must not be empty" in line
    assert list(tmp_path.iterdir()) == []


def test_an_empty_variable_is_unset_as_documented(tmp_path: Path) -> None:
    """Unlike an empty flag: an empty variable is the usual way to unset one (`VAR= command`), for
    every `CGW_` variable alike, so the default data dir is used, not the current directory."""
    (tmp_path / "data").mkdir()  # only `serve` creates a data dir; `token` sets up an empty one
    done = subprocess.run(
        [CLI, "token", "u1"], env={VAR: ""}, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert (tmp_path / "data" / "keys.json").is_file()


def test_audit_export_names_its_own_flags(tmp_path: Path) -> None:
    """`--from` after `--to` was "from: must not be after `to`", the API's field names, and an
    empty `--out` the current directory ("--out .: Is a directory") where empty flags are refused."""
    data = tmp_path / "data"
    data.mkdir()
    made = subprocess.run(
        [CLI, "keys", "create", "--name", "ops", "--scope", "admin", "--data-dir", str(data)],
        env={}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    out = tmp_path / "export.jws"
    window = ["--from", "2026-11-24T00:00:00Z", "--to", "2026-11-23T00:00:00Z"]
    line = _refused(["audit", "export", *window, "--out", str(out), "--data-dir", str(data)], {}, tmp_path)
    assert line == "consent-gateway: --from: must not be after --to"
    assert not out.exists()
    done = subprocess.run(
        [CLI, "audit", "export", "--out", "", "--data-dir", str(data)],
        env={}, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--out: empty: name the file to write" in done.stderr, done.stderr
