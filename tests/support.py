"""Assertions and stand-ins shared by the tests, and a real `consent-gateway serve` process."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from clients.delivery import DeliveryMessage, DeliveryResult
from gateway.logs import JsonFormatter
from gateway.runtime import Runtime
from gateway.schemas.me import ConsentUpdate, DeviceCreate
from policies import StateParts
from storage.connections import Connection
from storage.db import Database
from storage.writer import Writer


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """Every refusal has one shape: {status_code, detail, extra?}, naming the field when there is one."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["status_code"] == status
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert set(body) <= {"status_code", "detail", "extra"}
    if field is not None:
        keys = [item.get("key") for item in body.get("extra") or [] if isinstance(item, dict)]
        assert field in keys or field in body["detail"], f"{field!r} not named in {body}"
    return body


def verdict(client: Any, auditor: dict[str, str]) -> dict[str, Any]:
    """`GET /v1/audit/ledger/verify`'s answer."""
    response = client.get("/v1/audit/ledger/verify", headers=auditor)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def tamper(runtime: Runtime, *statements: str) -> None:
    """Raw SQL on the data database, as whoever holds its key runs it."""

    def unit(conn: Connection) -> None:
        for sql in statements:
            conn.execute(sql)

    runtime.store.data.writer.run_sync(unit)


def cli_audit_verify(data_dir: Path) -> tuple[int, str, dict[str, Any]]:
    """`consent-gateway audit verify` on the data dir, as an operator runs it (no `CGW_*` set):
    its exit status, its standard error and its report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGW_")}
    command = [
        str(Path(sys.executable).with_name("consent-gateway")),
        "audit",
        "verify",
        "--data-dir",
        str(data_dir),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    report: dict[str, Any] = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, done.stderr, report


def grow_ledger(client: Any, user: dict[str, str], n: int) -> None:
    """n consent events for one user, alternately a grant and a withdrawal of marketing."""
    for i in range(n):
        response = client.put(
            "/v1/me/consents/marketing", headers=user, json={"granted": i % 2 == 0, "notice_version": "v1"}
        )
        assert response.status_code == 200, response.text


def scan_bytes(root: Path, needles: list[str]) -> dict[str, list[str]]:
    """Which needles occur, as UTF-8 or UTF-16, in which files under root. The databases are
    encrypted page by page, so this finds nothing in them however their columns leak: it guards
    against a file kept in the clear (a log, a sidecar, an unkeyed database). Privacy tests pair
    it with `scan_tables`, which reads each column through SQLite."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        blob = path.read_bytes()
        for needle in needles:
            for encoded in (needle.encode(), needle.encode("utf-16-le")):
                if encoded in blob:
                    found.setdefault(needle, []).append(path.name)
    return found


@contextmanager
def out_of_descriptors(spare: int) -> Iterator[None]:
    """This process really out of file descriptors for the block: the soft limit lowered to what
    is open and `spare` more, and those filled with /dev/null; all given back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + spare, hard))
    try:
        with suppress(OSError):
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        assert held, "no descriptor was left to fill"
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def readers(runtime: Runtime) -> dict[str, Connection]:
    """A read connection to every database the runtime's store holds (the data database and the
    subject directory today), by file name: the runtime's own readers, so what they give is
    decrypted, as the gateway itself sees it."""
    databases = [db for db in vars(runtime.store).values() if isinstance(db, Database)]
    return {db.path.name: db.reader() for db in databases}


PAGE_SIZE = 4096


def rot_page(path: Path, page: int) -> None:
    """Flip one bit of page `page` (from 1) of a database file, as bit rot leaves it: SQLCipher's
    check of that page fails when it is read (SQLITE_CORRUPT)."""
    with open(path, "r+b") as f:
        f.seek((page - 1) * PAGE_SIZE + 200)
        byte = f.read(1)
        f.seek((page - 1) * PAGE_SIZE + 200)
        f.write(bytes([byte[0] ^ 1]))


def rot_last_page(path: Path, key: bytes) -> None:
    """Add a table `big` of eight ~3 KB rows, a page each, to the database at `path`, whose last
    page (row 7's) then rots (`rot_page`)."""
    writer = Writer(path, key, name="rot")

    def rows(conn: Connection) -> None:
        conn.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        for i in range(8):
            conn.execute("INSERT INTO big (id, body) VALUES (?, ?)", (i, os.urandom(3000)))

    writer.run_sync(rows)
    writer.run_alone(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
    writer.close()
    rot_page(path, path.stat().st_size // PAGE_SIZE)


def stored_values(conn: Connection) -> Iterator[tuple[str, str, object]]:
    """(table, column, value) for every value of every table of one database, `sqlite_master`
    (the schema's own text) included: `SELECT *`, so a column or table added later is read too."""
    tables = ["sqlite_master"] + [
        str(name)
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    ]
    for table in tables:
        cursor = conn.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - names from sqlite_master
        columns = [str(d[0]) for d in cursor.description]
        for row in cursor:
            for column, value in zip(columns, row, strict=True):
                yield table, column, value


def _holds(value: object, needle: str) -> bool:
    if isinstance(value, str):
        return needle in value
    if isinstance(value, bytes | bytearray | memoryview):
        blob = bytes(value)
        return needle.encode() in blob or needle.encode("utf-16-le") in blob
    if isinstance(value, int | float):
        return needle in str(value) or needle in repr(value)  # coordinates kept as numbers
    return False


def scan_tables(databases: Mapping[str, Connection], needles: Iterable[str]) -> dict[str, list[str]]:
    """Which needles occur in the clear, as text, inside a blob (UTF-8 or UTF-16) or in a number's
    digits, in which `<file>:<table>.<column>` of these databases, read through SQLite. Unlike
    `scan_bytes` over the files, which SQLCipher encrypts page by page, this sees what a column
    holds: a raw user id written to a plaintext column shows here, not in the file's bytes."""
    wanted = list(needles)
    found: dict[str, list[str]] = {}
    for name, conn in databases.items():
        for table, column, value in stored_values(conn):
            for needle in wanted:
                where = f"{name}:{table}.{column}"
                if _holds(value, needle) and where not in found.get(needle, []):
                    found.setdefault(needle, []).append(where)
    return found


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """The log lines a real gateway would write for the records captured in this test, its
    fixtures' setup included, for privacy scans: each rendered by `gateway.logs.JsonFormatter`,
    the real process's formatter, which writes every `extra=` field. `caplog.text` holds only
    the message, so a token put in `extra` would pass a scan of it.

    Records of `httpx` below WARNING are left out, as `configure_logging` leaves them out of a
    real process: here they are the test client's own lines, with the URL it was given."""
    formatter = JsonFormatter()
    phases = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    records = {id(record): record for record in phases}.values()  # caplog.records is one phase's
    return "\n".join(
        formatter.format(record)
        for record in records
        if not (record.name.startswith("httpx") and record.levelno < logging.WARNING)
    )


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a real server under test.

    The port is free when asked for, and the server binds it up to a second later. Under
    pytest-xdist (`make test`), the other worker's next ask could be handed the same port in
    between, so each worker takes only its own share of the ports: by half the port's number,
    as Linux hands `bind` odd ports (keeping the even ones for `connect`). Past a thousand tries
    (a kernel that hands out ports otherwise), any free port."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port // 2 % workers == worker:
            break
    return port


def daytime_zone(at: datetime | None = None) -> str:
    """A fixed-offset zone where it is about noon at `at` (by default now), so default quiet hours
    (21:00-08:00) never defer a marketing push whatever hour the tests run at. A test whose app
    runs on a fake clock passes that clock's time: the real hour made its pushes wait for the
    morning from 15:00 to 02:00 UTC."""
    hour = time.gmtime().tm_hour if at is None else at.astimezone(UTC).hour
    k = ((12 - hour + 12) % 24) - 12  # local hour = 12 at UTC offset +k
    return "Etc/GMT" if k == 0 else f"Etc/GMT{'-' if k > 0 else '+'}{abs(k)}"


# Web Push subscription keys must be real-shaped (a 65-byte P-256 point, 16 bytes of auth), so
# tests that mark tokens for leak scans put their marker in the endpoint.
WEBPUSH_KEYS = {
    "p256dh": base64.urlsafe_b64encode(b"\x04" + bytes(range(1, 65))).decode().rstrip("="),
    "auth": base64.urlsafe_b64encode(bytes(range(100, 116))).decode().rstrip("="),
}


class Scripted:
    """A delivery provider that answers every message with one status and keeps the push ids it
    was sent: the real Dispatcher runs against it where a test needs a provider's verdict."""

    def __init__(self, name: str, status: Literal["delivered", "retry", "failed"]) -> None:
        self.name = name
        self.status = status
        self.sent: list[str] = []

    async def send(self, message: DeliveryMessage) -> DeliveryResult:
        self.sent.append(message.push_id)
        return DeliveryResult(status=self.status)

    async def aclose(self) -> None:
        """Nothing to close."""


class WebhookRelay:
    """A local stand-in for the wallet's push relay: answers each POST with the next status from
    `answers` (the last one repeats), keeping each body and its Idempotency-Key, and each raw
    body with its signature headers (`signed`: timestamp, signature, bytes). `before_answer`, if
    set, runs in the relay's thread before each answer (a test's way in between a send and its
    results)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = [(200, {})]
        self.before_answer: Callable[[], None] | None = None
        self.received: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.signed: list[tuple[str, str, bytes]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                with outer._lock:
                    outer.received.append(json.loads(raw))
                    outer.keys.append(self.headers.get("idempotency-key", ""))
                    stamp, signature = (
                        self.headers.get("x-cgw-timestamp", ""),
                        self.headers.get("x-cgw-signature", ""),
                    )
                    outer.signed.append((stamp, signature, raw))
                    status, headers = outer.answers.pop(0) if len(outer.answers) > 1 else outer.answers[0]
                if outer.before_answer is not None:
                    outer.before_answer()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    @property
    def push_ids(self) -> list[str]:
        return [str(body["push_id"]) for body in self.received]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


CLI = str(Path(sys.executable).with_name("consent-gateway"))
STARTUP_SECONDS = 20.0
STOP_SECONDS = 10.0


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    data_dir: Path
    stderr_file: Path
    env: dict[str, str]

    def stderr(self) -> str:
        return self.stderr_file.read_text(encoding="utf-8", errors="replace")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, *args, "--data-dir", str(self.data_dir)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def stop(self) -> None:
        """SIGTERM, bounded wait, kill on timeout; the shutdown must be the graceful one.

        uvicorn re-raises the captured SIGTERM after its graceful shutdown, so -SIGTERM is a
        clean exit too; the log says whether the lifespan shutdown completed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_SECONDS)
                pytest.fail(f"the server ignored SIGTERM for {STOP_SECONDS} s:\n{self.stderr()[-2000:]}")
        assert self.process.returncode in {0, -signal.SIGTERM}, self.stderr()[-2000:]
        assert "Application shutdown complete." in self.stderr(), self.stderr()[-2000:]


@contextmanager
def serve_process(data_dir: Path, stderr_file: Path, settings: dict[str, str]) -> Iterator[Server]:
    """`consent-gateway serve` as its own process on a free port of 127.0.0.1, on `data_dir` with
    the given CGW_ settings and its stderr in `stderr_file`; answers /healthz before this yields,
    and is killed on the way out if the test has not stopped it."""
    port = free_port()
    env = {**settings, "CGW_DATA_DIR": str(data_dir)}
    with stderr_file.open("wb") as sink:
        process = subprocess.Popen(
            [CLI, "serve", "--port", str(port), "--data-dir", str(data_dir)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    running = Server(process, f"http://127.0.0.1:{port}", data_dir, stderr_file, env)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{running.stderr()[-3000:]}")
            try:
                if httpx.get(f"{running.base}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /healthz within {STARTUP_SECONDS} s:\n{running.stderr()[-3000:]}")
            time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_SECONDS)


def apns_token(seed: str) -> str:
    """A device token APNs would take (64 hex digits, as Apple gives them), one for each seed: the
    gateway refuses an `apns` token that is not hex, as its adapter would never send it."""
    return hashlib.sha256(seed.encode()).hexdigest()


def onboard(
    client: TestClient[Litestar],
    as_user: Callable[[str], dict[str, str]],
    user_id: str,
    *,
    consent: bool = True,
    **prefs: Any,
) -> dict[str, str]:
    """A user set up through the API as the wallet would: marketing consent granted (unless not),
    an APNs device registered, the preferences given if any; returns their headers."""
    headers = as_user(user_id)
    if consent:
        body = {"granted": True, "notice_version": "v1"}
        assert client.put("/v1/me/consents/marketing", json=body, headers=headers).status_code == 200
    device = {"platform": "apns", "token": apns_token(user_id)}
    assert client.post("/v1/me/devices", json=device, headers=headers).status_code == 201
    if prefs:
        assert client.patch("/v1/me/preferences", json=prefs, headers=headers).status_code == 200
    return headers


def audience(client: TestClient[Litestar], runtime: Runtime, prefix: str, n: int) -> list[str]:
    """n users with marketing consent and one device each, set up through the same services the
    preference center calls, in one hop onto the app's loop (HTTP per user is the slow part)."""
    users = [f"{prefix}-{i:04d}" for i in range(n)]

    async def setup() -> None:
        for user in users:
            ref = runtime.store.pseudonyms.subject_ref(user)
            consent = ConsentUpdate(granted=True, notice_version="v1")
            await runtime.preferences.set_consent(ref, "marketing", consent, actor="test", source="test")
            await runtime.devices.register(ref, DeviceCreate(platform="apns", token=apns_token(user)))

    client.blocking_portal.call(setup)
    return users


STATE_FIELDS: dict[StateParts, tuple[str, ...]] = {
    StateParts.CONSENTS: ("consents",),
    StateParts.LOCATION: ("location_geohash", "location_at"),
    StateParts.PREFERENCES: ("topics_off", "timezone", "quiet_start", "quiet_end", "max_per_week"),
    StateParts.MUTES: ("muted_until",),
    StateParts.SCHEDULE: ("scheduled",),
}
"""The `SubjectState` fields of each part (`status` and `active_devices` are read for every push):
tests/property/test_state_parts.py holds it to `SubjectState` and `decide`,
tests/api/test_state_parts_loaded.py holds `subject_state.load_many` to it."""
