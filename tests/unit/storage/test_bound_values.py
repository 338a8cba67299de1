"""Values bound to statements are stored as they were given, through the adapters
`storage.connections` registers for `bytes` and None to bind them at a string's cost: a sealed
field stays a blob of the same bytes, a missing one stays NULL, in single statements and in
`executemany` alike."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storage.connections import connect

SEALED = os.urandom(48)


CASES = {
    "sealed": (SEALED, "blob"),
    "empty": (b"", "blob"),
    "none": (None, "null"),
    "text": ("text", "text"),
    "int": (7, "integer"),
    "bytearray": (bytearray(b"ab"), "blob"),
}


@pytest.mark.parametrize(("value", "stored_as"), CASES.values(), ids=CASES.keys())
def test_a_bound_value_is_stored_as_given(tmp_path: Path, value: object, stored_as: str) -> None:
    conn = connect(tmp_path / "t.db", os.urandom(32))
    conn.execute("CREATE TABLE t (v)")
    conn.execute("INSERT INTO t VALUES (?)", (value,))
    conn.executemany("INSERT INTO t VALUES (?)", [(value,), (value,)])
    rows = conn.execute("SELECT typeof(v), v FROM t").fetchall()
    conn.close()
    expected = bytes(value) if isinstance(value, bytearray) else value
    assert rows == [(stored_as, expected)] * 3


def test_bytes_and_none_match_as_query_parameters(tmp_path: Path) -> None:
    conn = connect(tmp_path / "t.db", os.urandom(32))
    conn.execute("CREATE TABLE t (k, v)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(SEALED, 1), (None, 2)])
    assert conn.execute("SELECT v FROM t WHERE k = ?", (SEALED,)).fetchall() == [(1,)]
    assert conn.execute("SELECT v FROM t WHERE k IS ?", (None,)).fetchall() == [(2,)]
    conn.close()
