"""What binding a value costs the SQLCipher driver, by type, with and without an adapter.

The driver binds a `str`, an int or a float directly; any other value it first offers to
adapters, and for a type with none registered it looks for `__adapt__` and `__conform__` by
name, two failed attribute lookups a value. `storage.connections` registers pass-through adapters for
`bytes` and None, which a push's row binds a dozen of (sealed fields, columns not yet set).
This prints µs per row of a one-column `executemany` into an in-memory table for each type, with
the adapters and with them taken out of the driver's registry for the measure, each as a ratio
to binding a `str` in the same run. Numbers only, no pass or fail; a few seconds.

    python bench/bind_cost.py
"""

from __future__ import annotations

import platform
import time

import sqlcipher3

import storage.connections  # noqa: F401  (registers the adapters measured here)

ROWS = 200_000
REGISTERED = (bytes, type(None))


def _per_row(conn: sqlcipher3.Connection, value: object) -> float:
    rows = [(value,)] * ROWS
    conn.execute("DELETE FROM t")
    start = time.perf_counter()
    conn.executemany("INSERT INTO t VALUES (?)", rows)
    return (time.perf_counter() - start) / ROWS * 1e6


def main() -> None:
    conn = sqlcipher3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (v)")
    values: dict[str, object] = {"str": "x" * 48, "int": 7, "bytes": bytes(48), "None": None}
    print(f"Python {platform.python_version()} on {platform.machine()}, SQLite {sqlcipher3.sqlite_version}")
    _per_row(conn, "warm")
    base = min(_per_row(conn, values["str"]) for _ in range(3))
    adapters = {kind: sqlcipher3.adapters[(kind, sqlcipher3.PrepareProtocol)] for kind in REGISTERED}
    for registered in (True, False):
        for kind in REGISTERED:
            if not registered:
                del sqlcipher3.adapters[(kind, sqlcipher3.PrepareProtocol)]
        for name, value in values.items():
            if registered or type(value) in REGISTERED:
                cost = min(_per_row(conn, value) for _ in range(3))
                label = f"{name} ({'as registered' if registered else 'no adapter'})"
                print(f"{label:24s} {cost:6.2f} µs a row  {cost / base:5.2f}× a str")
        for kind, adapter in adapters.items():
            sqlcipher3.register_adapter(kind, adapter)


if __name__ == "__main__":
    main()
