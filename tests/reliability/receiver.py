"""A real webhook receiver on 127.0.0.1 playing the wallet's push relay, for the reliability tests.

It verifies X-CGW-Timestamp / X-CGW-Signature exactly as a relay would (with the product's own
`verify_webhook_signature`), records every request (push_id, device_id, Idempotency-Key,
timestamp header, arrival time on this process's monotonic clock, what it answered) and can be
told to answer 503 (optionally with Retry-After) for a while, or to answer slowly.

A request whose body ends early (the gateway was killed while sending) is answered 400 and
recorded with `complete=False`. A complete request with a bad signature is answered 401 and
recorded with `signature_ok=False`; tests assert there are none. Pattern copied from
tests/unit/delivery/servers.py (HTTP/1.1 here, with keep-alive and a deep accept queue, because
the gateway sends a round at once: up to CGW_WORKER_CONCURRENCY connections, 256 by default).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clients.delivery import verify_webhook_signature

__all__ = ["Hit", "Receiver"]


@dataclass(frozen=True)
class Hit:
    push_id: str
    device_id: str
    idempotency_key: str
    timestamp: str
    signature_ok: bool
    complete: bool  # False: the sender vanished mid-body (a killed gateway); never verified
    arrived: float  # time.monotonic() when the request's body had been read
    answered: int  # the status this receiver answered
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.raw)
        return decoded


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the gateway opens up to CGW_WORKER_CONCURRENCY (256) connections at once

    def handle_error(self, request: object, client_address: object) -> None:
        """A gateway SIGKILLed mid-request resets its connections: expected here, not news."""


class Receiver:
    """Context manager; `url` is the hook's URL. Every knob is safe to change while running."""

    def __init__(self, secret: str, *, delay: float = 0.0, now: Callable[[], float] = time.time) -> None:
        """`now`: the clock a signature's timestamp is checked against, the gateway's own in a
        test that runs it on a fake clock (it stamps its sends with that clock)."""
        self.secret = secret
        self.delay = delay
        self._now = now
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._fail_until = 0.0  # monotonic deadline of the 503 period
        self._retry_after: str | None = None
        self.answer_status: int | None = None  # a fixed answer (e.g. 410) instead of 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                outer._handle(self, raw, complete=len(raw) == length)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests read `hits`."""

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    # -- control ---------------------------------------------------------------------------

    def fail_for(self, seconds: float, retry_after: str | None = None) -> float:
        """Answer 503 for the next `seconds`; returns the monotonic time the outage ends."""
        with self._lock:
            self._fail_until = time.monotonic() + seconds
            self._retry_after = retry_after
            return self._fail_until

    # -- views -----------------------------------------------------------------------------

    def snapshot(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    def delivered(self) -> list[Hit]:
        """Requests answered 2xx: the deliveries the relay accepted."""
        return [h for h in self.snapshot() if 200 <= h.answered < 300]

    def delivered_keys(self) -> set[str]:
        return {h.idempotency_key for h in self.delivered()}

    def repeats(self) -> Counter[str]:
        """Idempotency keys accepted more than once, with how many extra copies each."""
        counts = Counter(h.idempotency_key for h in self.delivered())
        return Counter({k: n - 1 for k, n in counts.items() if n > 1})

    # -- server ----------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, raw: bytes, complete: bool) -> None:
        arrived = time.monotonic()
        headers = {k.lower(): v for k, v in handler.headers.items()}
        stamp = headers.get("x-cgw-timestamp", "")
        ok = verify_webhook_signature(
            self.secret, stamp, raw, headers.get("x-cgw-signature", ""), now=self._now()
        )
        try:
            body = json.loads(raw)
            push_id, device_id = str(body.get("push_id")), str(body.get("device_id"))
        except (ValueError, AttributeError):
            push_id = device_id = ""
        if not complete:
            ok = False
        extra: dict[str, str] = {}
        with self._lock:
            if not complete:
                status = 400
            elif not ok:
                status = 401
            elif arrived < self._fail_until:
                status = 503
                if self._retry_after is not None:
                    extra["Retry-After"] = self._retry_after
            else:
                status = self.answer_status or 200
            self.hits.append(
                Hit(
                    push_id=push_id,
                    device_id=device_id,
                    idempotency_key=headers.get("idempotency-key", ""),
                    timestamp=stamp,
                    signature_ok=ok,
                    complete=complete,
                    arrived=arrived,
                    answered=status,
                    headers=headers,
                    raw=raw,
                )
            )
        if self.delay:
            time.sleep(self.delay)
        payload = b'{"ok":true}' if status == 200 else b'{"error":"unavailable"}'
        handler.send_response(status)
        for name, value in extra.items():
            handler.send_header(name, value)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
