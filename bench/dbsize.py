"""Where a seeded database's bytes go: rows and payload bytes per table, per subject.

SQLCipher is built without the `dbstat` table, so this sums `length()` of every column (the
payload; page headers, b-tree slack, index copies of keys and the per-page IV and HMAC are the
rest of the file). Read-only; opens the databases with the keys in the data dir's key store.

    python bench/dbsize.py /tmp/cgw-bench-.../campaign
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from storage.connections import connect
from storage.keys import KeyStore


def table_bytes(conn: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        total = " + ".join(f"coalesce(length({c}), 0)" for c in columns) or "0"
        rows, payload = conn.execute(f"SELECT count(*), coalesce(sum({total}), 0) FROM {table}").fetchone()  # noqa: S608
        out[table] = {"rows": int(rows), "payload_bytes": int(payload)}
    return out


def main() -> None:
    data_dir = Path(sys.argv[1])
    keys = KeyStore.load(data_dir / "keys.json")
    report: dict[str, Any] = {}
    for name, key in (("gateway.db", keys.database_key), ("subjects.db", keys.directory_key)):
        conn = connect(data_dir / name, key)
        try:
            conn.execute("PRAGMA query_only = ON")
            report[name] = {
                "file_bytes": (data_dir / name).stat().st_size,
                "page_size": int(conn.execute("PRAGMA page_size").fetchone()[0]),  # text under SQLCipher
                "tables": table_bytes(conn),
            }
        finally:
            conn.close()
    subjects = report["subjects.db"]["tables"]["subjects"]["rows"]
    for db in report.values():
        for stats in db["tables"].values():
            stats["payload_bytes_per_subject"] = round(stats["payload_bytes"] / max(subjects, 1), 1)
        db["file_bytes_per_subject"] = round(db["file_bytes"] / max(subjects, 1), 1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
