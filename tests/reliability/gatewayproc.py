"""A real `consent-gateway serve` process for the reliability tests, and HTTP helpers to set up
users over the public API. Every wait is bounded in count and time; all traffic is to 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from support import daytime_zone, free_port

from gateway.clock import system_clock
from gateway.runtime import load_keys, user_tokens
from gateway.settings import Settings
from storage.connections import connect
from storage.store import DATA_FILE

__all__ = ["GatewayProcess"]

CLI = str(Path(sys.executable).with_name("consent-gateway"))
START_TIMEOUT = 20.0


class GatewayProcess:
    """One data dir, started and killed as often as a test likes; always on 127.0.0.1."""

    def __init__(self, data_dir: Path, hook_url: str, secret: str, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CGW_")},
            "CGW_DELIVERY_WEBHOOK_URL": hook_url,
            "CGW_DELIVERY_WEBHOOK_SECRET": secret,
            "CGW_LOG_LEVEL": "error",
            "CGW_TIMEZONE": daytime_zone(),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = data_dir.parent / "gateway.log"
        self._tokens: Any = None
        self._keys: Any = None
        self.key = ""

    # -- lifecycle -------------------------------------------------------------------------

    def setup(self) -> None:
        """Keys and an API key (pushes and campaigns), through the CLI, before the first start."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.key = self._cli(
            "keys", "create", "--name", "reliability", "--scope", "pushes:write", "campaigns:write",
            "campaigns:read",
        )  # fmt: skip
        settings = Settings(data_dir=self.data_dir)
        self._keys = load_keys(settings)
        self._tokens = user_tokens(settings, self._keys)

    def _cli(self, *args: str) -> str:
        done = subprocess.run(
            [CLI, *args, "--data-dir", str(self.data_dir)],
            env=self.env, capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        return done.stdout.decode().strip()

    def start(self) -> float:
        """Start and wait (bounded) until /healthz answers; returns seconds it took."""
        assert self.proc is None or self.proc.poll() is not None
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [CLI, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                env=self.env, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        self.starts += 1
        deadline = started + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1.0).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"gateway did not answer /healthz within {START_TIMEOUT} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, the worker dies wherever it is."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    # -- API helpers -----------------------------------------------------------------------

    def user_headers(self, user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._tokens.mint(user_id, system_clock())}"}

    def key_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def setup_users(
        self, user_ids: Sequence[str], *, purposes: Iterable[str] = ("marketing",), threads: int = 8
    ) -> dict[str, str]:
        """Consents and one webhook device per user, over HTTP; returns user_id -> device_id."""
        wanted = tuple(purposes)

        def one(client: httpx.Client, user_id: str) -> tuple[str, str]:
            headers = self.user_headers(user_id)
            for purpose in wanted:
                answer = client.put(
                    f"/v1/me/consents/{purpose}", json={"granted": True, "notice_version": "v1"},
                    headers=headers,
                )  # fmt: skip
                assert answer.status_code == 200, answer.text
            answer = client.post(
                "/v1/me/devices", json={"platform": "webhook", "token": f"relay-token-{user_id}"},
                headers=headers,
            )  # fmt: skip
            assert answer.status_code in (200, 201), answer.text
            return user_id, str(answer.json()["device_id"])

        chunks = [list(user_ids[i::threads]) for i in range(threads)]

        def run(chunk: list[str]) -> list[tuple[str, str]]:
            with httpx.Client(base_url=self.base, timeout=30) as client:
                return [one(client, u) for u in chunk]

        with ThreadPoolExecutor(threads) as pool:
            return dict(pair for part in pool.map(run, chunks) for pair in part)

    def submit_batch(self, pushes: list[dict[str, Any]], timeout: float = 60) -> list[dict[str, Any]]:
        answer = httpx.post(
            self.base + "/v1/pushes/batch", json={"pushes": pushes}, headers=self.key_headers(),
            timeout=timeout,
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        results: list[dict[str, Any]] = answer.json()["results"]
        return results

    def read_push(self, client: httpx.Client, push_id: str) -> dict[str, Any]:
        answer = client.get(f"/v1/pushes/{push_id}", headers=self.key_headers())
        assert answer.status_code == 200, answer.text
        got: dict[str, Any] = answer.json()
        return got

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A read-only look into the data database (WAL: safe while the server writes)."""
        conn = connect(self.data_dir / DATA_FILE, self._keys.database_key)
        try:
            conn.execute("PRAGMA query_only = ON")
            return list(conn.execute(sql, params).fetchall())
        finally:
            conn.close()

    def outbox_size(self) -> int:
        return int(self.query("SELECT count(*) FROM outbox")[0][0])

    def statuses(self) -> dict[str, str]:
        return {str(p): str(s) for p, s in self.query("SELECT push_id, status FROM pushes")}
