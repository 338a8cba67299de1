"""Seed many subjects straight into storage, through the storage layer, for the campaign benchmark.

`SubjectDirectory.ensure` writes one row per call (one transaction, one fsync), which would take
hours for a million subjects. This is the bulk path: the same tables, the same crypto, in large
transactions through each database's single writer —

* subjects.db: `subjects` rows with a fresh data key each, wrapped by the keyring with the
  directory's own associated data;
* gateway.db: a sealed preference document (`preferences.save`), one webhook device with its
  sealed token and fingerprint (`devices.insert`), and for consented subjects the consent row
  *and* its signed receipt in the hash-chained ledger (`PreferenceCenter.record_consent`, the
  code `PUT /v1/me/consents/{purpose}` runs), so the ledger still verifies afterwards;
* capped subjects get three delivered marketing pushes in the last three days (`pushes.insert`,
  content sealed), which with the default weekly cap of 3 makes a fourth `frequency_capped`.

The mix is fixed by the subject's index (i % 20): 60% consented; within those, 10% of all
subjects are inside their quiet hours now and 5% are capped; 40% never consented. User ids are
`campaign-user-<i>`; the campaign sends them as `user_id`, so pseudonymization runs at the edge.

    python bench/seed.py --data-dir /tmp/cgw-seed --count 1000000
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

from gateway.clock import system_clock
from gateway.runtime import Runtime
from gateway.settings import Settings
from storage import ledger
from storage.connections import Connection
from storage.crypto import FieldCipher, new_data_key
from storage.directory import SubjectKey
from storage.directory import _wrap_aad as wrap_aad  # the directory's own AAD, so `resolve` unwraps
from storage.repositories import devices, preferences, pushes
from storage.repositories.preferences import PreferenceDoc
from storage.repositories.pushes import PushContent, PushRow, content_aad

USER_PREFIX = "campaign-user-"
NOTICE = "2026-11"
MIX = {"consented": 0.60, "quiet_hours": 0.10, "capped": 0.05}


def kind_of(i: int) -> str:
    slot = i % 20
    if slot < 2:
        return "quiet_hours"
    if slot == 2:
        return "capped"
    if slot < 12:
        return "consented"
    return "no_consent"


def _hhmm(moment: datetime) -> str:
    return moment.strftime("%H:%M")


@dataclass(frozen=True)
class Seeded:
    count: int
    seconds: float
    gateway_db_bytes: int
    subjects_db_bytes: int
    empty_bytes: int

    @property
    def bytes_per_subject(self) -> float:
        total = self.gateway_db_bytes + self.subjects_db_bytes - self.empty_bytes
        return round(total / max(self.count, 1), 1)


def db_bytes(data_dir: Path, name: str) -> int:
    """A database's size on disk, its WAL included."""
    return sum(p.stat().st_size for p in data_dir.glob(name + "*") if p.suffix != ".json")


class Seeder:
    def __init__(self, runtime: Runtime, now: datetime) -> None:
        self._runtime = runtime
        self._store = runtime.store
        # Store keeps the directory database private; the bulk insert needs its writer.
        self._directory_writer = runtime.store._directory_db.writer
        self._pool = ThreadPoolExecutor(max_workers=2)  # one per writer: commits overlap sealing
        self._now = now
        self._in_quiet = PreferenceDoc(
            timezone="UTC", locale="en",
            quiet_start=_hhmm(now - timedelta(hours=1)), quiet_end=_hhmm(now + timedelta(hours=3)),
        )  # fmt: skip
        self._outside_quiet = PreferenceDoc(
            timezone="UTC", locale="en",
            quiet_start=_hhmm(now + timedelta(hours=4)), quiet_end=_hhmm(now + timedelta(hours=12)),
        )  # fmt: skip
        self._content = msgspec.json.encode(PushContent(title="Earlier offer", body="Seen before", data={}))

    def chunk(self, start: int, stop: int) -> tuple[Future[None], Future[None]]:
        """Prepare subjects [start, stop) on this thread; their writes go to the two writers."""
        now = self._now
        stamp = now.isoformat()
        keyring = self._store.keys.keyring
        rows: list[tuple[str, str, bytes, str]] = []
        subjects: list[tuple[int, SubjectKey]] = []
        for i in range(start, stop):
            ref = self._store.pseudonyms.subject_ref(f"{USER_PREFIX}{i}")
            subject_id = "s_" + secrets.token_hex(16)
            data_key = new_data_key()
            rows.append((ref, subject_id, keyring.wrap(data_key, wrap_aad(subject_id)), stamp))
            subjects.append((i, SubjectKey(ref, subject_id, FieldCipher(data_key))))

        def directory_unit(conn: Connection) -> None:
            conn.executemany(
                "INSERT INTO subjects (subject_ref, subject_id, wrapped_key, created_at) VALUES (?, ?, ?, ?)",
                rows,
            )

        tags = self._store.device_tags

        def data_unit(conn: Connection) -> None:
            for i, key in subjects:
                kind = kind_of(i)
                doc = self._in_quiet if kind == "quiet_hours" else self._outside_quiet
                preferences.save(conn, key, doc, now)
                token = f"relay-{i:010d}"
                devices.insert(conn, key, "webhook", token, devices.token_tag(tags, "webhook", token), now)
                if kind == "no_consent":
                    continue
                self._runtime.preferences.record_consent(
                    conn, key, "marketing", True, NOTICE, actor="user", source="bench-seed", now=now
                )
                if kind == "capped":
                    for days in (1, 2, 3):
                        self._delivered_push(conn, key, now - timedelta(days=days, minutes=i % 600))

        return (
            self._pool.submit(self._directory_writer.run_sync, directory_unit),
            self._pool.submit(self._store.data.writer.run_sync, data_unit),
        )

    def _delivered_push(self, conn: Connection, key: SubjectKey, at: datetime) -> None:
        push_id = pushes.new_push_id(at)
        stamp = at.isoformat()
        pushes.insert_many(
            conn,
            [PushRow(
                push_id=push_id, key_id="seed", idempotency_key=push_id, fingerprint=bytes(32),
                subject_id=key.subject_id, topic="product_tips", campaign_id=None, variant=None,
                outcome="queued", status="delivered", reasons="[]", allowed_by="[]", planned_at=stamp,
                deliver_after=None, expires_at=(at + timedelta(days=1)).isoformat(), created_at=stamp,
                updated_at=stamp, policy_version=1,
                content=key.cipher.seal(self._content, content_aad(push_id, key)), attempts=1,
            )],
        )  # fmt: skip


def seed(
    data_dir: Path, count: int, chunk: int = 2000, *, verify: bool = True, progress: bool = True
) -> Seeded:
    """Seed `count` subjects into a fresh data dir (its key store is created if missing)."""
    settings = Settings.from_env({}, data_dir=data_dir, worker_enabled=False, log_level="warning")
    # The empty databases measured as the seeded ones are below: made, then closed (which folds
    # the WAL in). Measured open, their WAL and shared memory took ~565 KB too many off the result.
    Runtime(settings).close()
    empty = db_bytes(data_dir, "gateway.db") + db_bytes(data_dir, "subjects.db")
    runtime = Runtime(settings)
    store = runtime.store
    seeder = Seeder(runtime, system_clock())
    started = time.perf_counter()
    pending: list[Future[None]] = []
    try:
        for start in range(0, count, chunk):
            # Keep at most two chunks in flight: this thread seals the next while the writers commit.
            while len(pending) > 2:
                pending.pop(0).result()
            pending.extend(seeder.chunk(start, min(start + chunk, count)))
            if progress and start and start % (chunk * 50) == 0:
                rate = start / (time.perf_counter() - started)
                print(f"  seeded {start:,} subjects ({rate:,.0f}/s)", file=sys.stderr, flush=True)
        for future in pending:
            future.result()
        seconds = time.perf_counter() - started
        store.data.checkpoint()
        store._directory_db.checkpoint()
        if verify and not ledger.verify(store.data.reader()).ok:
            raise RuntimeError("the ledger does not verify after seeding")
    finally:
        runtime.close()
    return Seeded(
        count=count,
        seconds=round(seconds, 1),
        gateway_db_bytes=db_bytes(data_dir, "gateway.db"),
        subjects_db_bytes=db_bytes(data_dir, "subjects.db"),
        empty_bytes=empty,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--no-verify", action="store_true", help="skip re-verifying the ledger's chain")
    args = parser.parse_args()
    result = seed(args.data_dir, args.count, args.chunk, verify=not args.no_verify)
    print(msgspec.json.encode({**result.__dict__, "bytes_per_subject": result.bytes_per_subject}).decode())


if __name__ == "__main__":
    main()
