"""`consent-gateway token USER_ID` refuses a user id the server would refuse, in the server's words.

It checked the length only: `token $'\\xff\\xfe'` (argv bytes that are not UTF-8) printed a token
whose `sub` the server then refused on every request.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.auth import UserTokens
from gateway.clock import system_clock
from gateway.errors import NotAuthenticated
from storage.keys import KeyStore

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("consent-gateway"))


def _token(
    data: Path, user_id: bytes, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [CLI.encode(), b"token", user_id, b"--data-dir", str(data).encode()],
        env=env or {},
        capture_output=True,
        timeout=60,
    )


def _server_detail(user_id: str) -> str:
    tokens = UserTokens(audience="consent-gateway", secret="s" * 32)
    try:
        now = system_clock()
        tokens.verify(tokens.mint(user_id, now), now)
    except NotAuthenticated as exc:
        return exc.detail
    raise AssertionError("the server accepts it")


@pytest.mark.parametrize("user_id", [b"\xff\xfe", b"ok\xed\xa0\x80", b"", b"x" * 129])
def test_a_user_id_the_server_refuses_gets_no_token(tmp_path: Path, user_id: bytes) -> None:
    done = _token(tmp_path, user_id)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stdout == b""
    detail = _server_detail(user_id.decode(errors="surrogateescape"))
    assert done.stderr.decode() == f"consent-gateway: USER_ID: {detail}\n"
    assert list(tmp_path.iterdir()) == []  # refused before any key was made


def test_a_token_printed_is_one_the_server_accepts(tmp_path: Path) -> None:
    user_id = "用户-" + "x" * 125  # 128 characters, many more bytes
    done = _token(tmp_path, user_id.encode())
    assert done.returncode == 0, done.stderr[-2000:]
    keys = KeyStore.load(tmp_path / "keys.json")
    tokens = UserTokens(audience="consent-gateway", secret=keys.jwt_dev_secret)
    assert tokens.verify(done.stdout.decode().strip(), system_clock()) == user_id


def test_the_token_carries_the_configured_audience(tmp_path: Path) -> None:
    """Every command reads the same variables: a token for a gateway whose CGW_JWT_AUDIENCE is
    set must be one that gateway accepts."""
    done = _token(tmp_path, b"alice", {"CGW_JWT_AUDIENCE": "wallet"})
    assert done.returncode == 0, done.stderr[-2000:]
    token = done.stdout.decode().strip()
    keys = KeyStore.load(tmp_path / "keys.json")
    assert UserTokens(audience="wallet", secret=keys.jwt_dev_secret).verify(token, system_clock()) == "alice"
    with pytest.raises(NotAuthenticated):
        UserTokens(audience="consent-gateway", secret=keys.jwt_dev_secret).verify(token, system_clock())
