"""Structured JSON logs, one object per line; never personal data. The request lines are
`gateway.request_log`'s; this module has no Litestar in it, so the CLI starts without it."""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

import msgspec

__all__ = ["JsonFormatter", "Streaks", "configure_logging", "quiet_server_access_log"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """The time is written to the second, so it is formatted once a second: `strftime` for every
    line was a sixth of what a request's line cost."""

    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if self._second[0] != second:
            self._second = (second, self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"))
        entry: dict[str, Any] = {
            "ts": self._second[1],
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
        return msgspec.json.encode(entry, enc_hook=str).decode()


OUR_LOGGERS = ("gateway", "storage", "clients", "policies")


def configure_logging(level: str) -> None:
    """`level` applies to our own loggers; other libraries never log below INFO. At DEBUG they
    log what they handle, and that is personal data: hpack logs every HTTP/2 header, among them
    the APNs path `/3/device/<token>`."""
    # Where a line was logged from, and the names of its thread and process, are looked up for
    # every record (a walk up the stack, a thread lookup), and none of them is in our lines: the
    # switches the logging HOWTO gives under "Optimization". A third of a request line's cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    wanted = logging.getLevelName(level.upper())
    root.setLevel(max(wanted, logging.INFO))
    for ours in OUR_LOGGERS:
        logging.getLogger(ours).setLevel(wanted)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # A runner's loggers keep their own handlers and the level it set before making the app: at
    # uvicorn's `--log-level trace` they logged every ASGI message, its query string included.
    # One it left unset follows the root, as under `serve`: quiet at CGW_LOG_LEVEL=warning.
    for runner in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        server = logging.getLogger(runner)
        if logging.NOTSET < server.level < logging.INFO:
            server.setLevel(logging.INFO)
    quiet_server_access_log()


def quiet_server_access_log() -> None:
    """An ASGI server's own access line holds the raw path and query string: a `user_id` in an
    audit filter, a subject_ref in a path. Our request line (route templates only) replaces it.
    Called by `serve` and again when the app starts, so that the app served by any runner
    (`uvicorn --factory gateway.app:create_app`) keeps it quiet too."""
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


class Streaks:
    """An event said once per `every` seconds while it goes on, with how many times it was not
    said since: a full disk refused each request with an error line of its own, thousands a
    second under load, written to what may be the same full disk."""

    def __init__(self, every: float = 10.0) -> None:
        self._every = every
        self._said: dict[str, tuple[float, int]] = {}  # event -> (when last said, times unsaid since)

    def unsaid(self, event: str) -> int | None:
        """None if `event` is not to be said now; else how many times it went unsaid before."""
        now = time.monotonic()
        at, since = self._said.get(event, (-math.inf, 0))
        if now - at < self._every:
            self._said[event] = (at, since + 1)
            return None
        self._said[event] = (now, 0)
        return since
