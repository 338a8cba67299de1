"""`serve --host/--port/--data-dir` go through the same parsers as their `CGW_` variables.

`--port 70000` used to be taken as given (uvicorn then listened on 70000 - 65536 = 4464) while
`CGW_PORT=70000` was refused: a flag must not be a way around a check.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("consent-gateway"))


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--port", "70000"), "--port"),
        (("--port", "0"), "--port"),
        (("--port", "http"), "--port"),
        (("--host", "not..a..host"), "--host"),
        (("--data-dir", "/dev/null"), "--data-dir"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else value,
)
def test_serve_flags_are_checked_like_the_variables(
    tmp_path: Path, flags: tuple[str, ...], named: str
) -> None:
    env = {"CGW_DATA_DIR": str(tmp_path / "data"), "CGW_WORKER_ENABLED": "false"}
    done = subprocess.run([CLI, "serve", *flags], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert named in lines[0]
    assert not (tmp_path / "data").exists()


def test_other_commands_check_data_dir_flags_too(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    done = subprocess.run(
        [CLI, "token", "u1", "--data-dir", str(afile)], env={}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(done.stderr.splitlines()) == 1
    assert "--data-dir" in done.stderr
