"""The JSON line format: its time formatted once a second, and still right at every second."""

from __future__ import annotations

import json
import logging
import time

from gateway.logs import JsonFormatter


def _record(created: float, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("gateway.http", logging.INFO, __file__, 1, "request", None, None)
    record.created = created
    record.__dict__.update(extra)
    return record


def test_each_line_has_its_own_seconds_time_and_its_extras() -> None:
    formatter = JsonFormatter()
    start = 1_765_000_000.0
    lines = [
        json.loads(formatter.format(_record(start + dt, route="/v1/pushes"))) for dt in (0.1, 0.9, 1.2, 0.5)
    ]
    expected = [
        time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start + dt)) for dt in (0.1, 0.9, 1.2, 0.5)
    ]
    assert [line["ts"] for line in lines] == expected
    assert expected[0] == expected[1] != expected[2]  # the second changed, and changed back
    assert lines[0] == {"ts": expected[0], "level": "info", "logger": "gateway.http", "msg": "request",
                        "route": "/v1/pushes"}  # fmt: skip
