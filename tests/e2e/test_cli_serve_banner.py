"""`serve`'s banner points at the two pages a person opens: the preference center (in dev mode,
signed in as the demo user through the URL fragment) and the auditor dashboard.

The fragment is never sent to the server, so the token stays out of request logs; the page reads it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support import free_port, serve_process

pytestmark = pytest.mark.slow

BANNER_END = "  an API key:"
CLI = str(Path(sys.executable).with_name("consent-gateway"))


def _banner(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    return lines[: next(i for i, line in enumerate(lines) if line.startswith(BANNER_END)) + 1]


def test_dev_banner_links_the_preference_center_and_the_auditor_dashboard(tmp_path: Path) -> None:
    with serve_process(tmp_path / "data", tmp_path / "server.stderr", {}) as server:
        banner = _banner(server.stderr())
        text = "\n".join(banner)
        token = banner[banner.index("  dev token for user 'demo-user':") + 1].strip()
        found = re.search(r"^  preferences: (\S+)/preferences#token=(\S+)$", text, re.MULTILINE)
        assert found, text
        assert found.group(1) == server.base
        assert found.group(2) == token
        assert f"  auditor:     {server.base}/audit/" in banner
        with httpx.Client(base_url=server.base, timeout=10.0) as http:
            assert http.get("/preferences").status_code == 200
            assert http.get("/audit/").status_code == 200
            me = http.get("/v1/me/preferences", headers={"Authorization": f"Bearer {found.group(2)}"})
            assert me.status_code == 200, me.text
        server.stop()


def test_no_preference_center_token_unless_the_dev_secret_signs(tmp_path: Path) -> None:
    settings = {"CGW_JWT_SECRET": "s" * 32}
    with serve_process(tmp_path / "data", tmp_path / "server.stderr", settings) as server:
        text = "\n".join(_banner(server.stderr()))
        server.stop()
    assert "#token=" not in text
    assert "/preferences" not in text
    assert f"  auditor:     {server.base}/audit/" in text


def test_an_ipv6_host_is_bracketed_in_the_urls(tmp_path: Path) -> None:
    port = free_port()  # free on 127.0.0.1, and the server is stopped as soon as its banner is read
    env = {
        "CGW_DATA_DIR": str(tmp_path / "data"),
        "CGW_HOST": "::1",
        "CGW_PORT": str(port),
        "CGW_WORKER_ENABLED": "0",
    }
    with subprocess.Popen([CLI, "serve"], env=env, stderr=subprocess.PIPE, text=True) as server:
        assert server.stderr is not None
        banner = []
        try:
            for line in server.stderr:  # printed before uvicorn starts
                banner.append(line.rstrip("\n"))
                if line.startswith(BANNER_END):
                    break
        finally:
            server.terminate()
    assert f"Consent Gateway on http://[::1]:{port}" in banner, banner
    assert f"  auditor:     http://[::1]:{port}/audit/" in banner


def test_the_banner_s_api_key_command_runs_as_pasted(tmp_path: Path) -> None:
    """It said `consent-gateway keys create ...`, which is not on the PATH of someone who ran
    `make run` (it starts `.venv/bin/consent-gateway`): pasted, it was 'command not found'. Then
    it named no data dir: pasted in another shell it made the key in that shell's `./data`, and
    this server answered the key 401; and its program was relative to where serve started."""
    with serve_process(tmp_path / "data", tmp_path / "server.stderr", {}) as server:
        line = _banner(server.stderr())[-1]
        command = line.removeprefix(BANNER_END).strip()
        server.stop()
    elsewhere = tmp_path / "another-terminal"  # which opens in another directory
    elsewhere.mkdir()
    made = subprocess.run(  # noqa: S602 - the banner's line, pasted into a shell without CGW_DATA_DIR
        command, shell=True, cwd=elsewhere, env={"PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, (command, made.stderr)
    assert made.stdout.startswith("cgw_")
    listed = subprocess.run(
        [CLI, "keys", "list", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "marketing" in listed.stdout, listed
