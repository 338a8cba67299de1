"""What each SQLCipher page MAC costs on this machine: a page read, and a row inserted at random.

SQLCipher checks the MAC of every page it reads from the file or the WAL, and makes one for every
page a commit writes. Its default, HMAC-SHA512, is the faster in software; HMAC-SHA256 is the
faster where the processor has SHA extensions. New files take the faster one for the processor
(`storage.connections.PAGE_MAC`); this measures both, interleaved, so the choice can be checked on a
machine, and with `OPENSSL_ia32cap=":~0x20000000"` (SHA-NI hidden from OpenSSL) as on one without
them. Beside them, the same library on a file with no key: what encryption at rest costs at all,
as a commit pays it per dirty page (docs/performance-history.md, "Page MACs by the processor"
and "What encryption at rest costs, tables keyed by subject, and run AV"). About 40 s.

    python bench/page_mac.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import sqlcipher3

from storage.connections import PAGE_CACHE_KIB, PAGE_MAC, SHA256_PAGES, SHA512_PAGES, Connection, connect

KEY = os.urandom(32)
ROWS = 150_000  # ~11,000 pages, each read once by a scan on a fresh connection (from the OS cache)
ROUNDS = 5
INSERTS, PER_COMMIT = 10_000, 500
UNENCRYPTED = "no key"


def _open(path: Path, mac: str) -> Connection:
    if mac != UNENCRYPTED:
        return connect(path, KEY, page_mac=mac, synchronous="OFF")
    conn: Connection = sqlcipher3.connect(str(path), isolation_level=None)
    for pragma in (
        "journal_mode = WAL",
        "synchronous = OFF",
        "secure_delete = ON",
        f"cache_size = -{PAGE_CACHE_KIB}",
    ):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def _filled(path: Path, mac: str) -> None:
    conn = _open(path, mac)
    conn.execute("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?, ?)", ((os.urandom(16), os.urandom(200)) for _ in range(ROWS)))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _round(path: Path, mac: str) -> tuple[float, float]:
    """(µs of CPU a page read by a full scan on a fresh connection, µs a row inserted at a random
    place in commits of `PER_COMMIT`)."""
    conn = _open(path, mac)
    try:
        started = time.process_time()
        conn.execute("SELECT count(*), sum(length(v)) FROM t").fetchone()
        scan = time.process_time() - started
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        started = time.process_time()
        for _ in range(INSERTS // PER_COMMIT):
            rows = [(os.urandom(16), os.urandom(200)) for _ in range(PER_COMMIT)]
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
            conn.execute("COMMIT")
        insert = time.process_time() - started
    finally:
        conn.close()
    return scan / pages * 1e6, insert / INSERTS * 1e6


def main() -> None:
    macs = (SHA512_PAGES, SHA256_PAGES, UNENCRYPTED)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {mac: Path(tmp) / f"{mac}.db" for mac in macs}
        for mac, path in paths.items():
            _filled(path, mac)
        seen: dict[str, list[tuple[float, float]]] = {mac: [] for mac in macs}
        for _ in range(ROUNDS):
            for mac in macs:
                seen[mac].append(_round(paths[mac], mac))
    print(f"new files here take {PAGE_MAC}; medians of {ROUNDS} interleaved rounds, µs of CPU:")
    for mac in macs:
        scans, inserts = zip(*seen[mac], strict=True)
        scan, insert = statistics.median(scans), statistics.median(inserts)
        print(f"  {mac}: a page read {scan:5.2f}, a row inserted {insert:5.2f}")


if __name__ == "__main__":
    main()
