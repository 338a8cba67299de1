"""What item 1 of docs/performance.md's "What would reach the missed targets" would buy, measured
before building it: a campaign batch's storage work on today's layout against a prototype of the
proposed one, in one process, on one copy of a `bench/seed.py` directory, batches interleaved.

Today (what `PushService._record_all` does to storage for a batch of campaign pushes): the
subject state read with `subject_state.load_many` (six `IN` queries over six tables, the
preference document opened), then one full `pushes` row per decision (content sealed under the
subject's key, five indexes) and an outbox row per accepted push.

Proposed: one sealed row per subject holding everything the policies read (`subject_rows`, built
here from today's tables, `WITHOUT ROWID`), read with one `IN` query and opened; a compact
recipient row per decision appended in campaign order (outcome, reasons, planned time and the
sealed "why"; the content is the campaign's, stored once); the subject's row sealed again with
the new planned push for each accepted one (the caps must see it); the same outbox rows.

Not measured, the same on both sides: the directory (`resolve_many`, timed once per batch and
reported apart), pseudonymization, decoding and the policies. Outcomes come from the seeded mix
(consented → queued, else rejected), so both layouts write the same decisions.

    python bench/layout_probe.py --seeded /tmp/seed --subjects 1000000 --batches 3
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import msgspec
import seed

from gateway.clock import system_clock
from gateway.runtime import Runtime
from gateway.settings import Settings
from policies.context import Scheduled, SubjectState
from policies.engine import StateParts
from storage import outbox
from storage.connections import Connection, in_chunks
from storage.crypto import field_aad
from storage.directory import SubjectKey
from storage.repositories import pushes, subject_state
from storage.repositories.pushes import PushContent, PushRow

BATCH = 10_000
TOPIC = "promotions"
_WHY = ("consent:marketing", "topic:promotions", "cap:1/3")
_CONTENT = PushContent(
    title="Weekend offer", body="20% off at partner stores this weekend.",
    data={"deeplink": "wallet://offers/weekend"}, why=_WHY,
)  # fmt: skip
_REJECTED = '[{"code":"no_consent","purpose":"marketing"}]'

_PROTOTYPE_SCHEMA = (
    "CREATE TABLE subject_rows (subject_id TEXT PRIMARY KEY, sealed BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE recipients (campaign_id TEXT NOT NULL, seq INTEGER NOT NULL, subject_id TEXT, "
    "outcome TEXT NOT NULL, status TEXT NOT NULL, reasons TEXT NOT NULL, planned_at TEXT, "
    "why BLOB, PRIMARY KEY (campaign_id, seq)) WITHOUT ROWID",
)


def _row_aad(key: SubjectKey) -> bytes:
    return field_aad("subject_rows", "sealed", key.subject_id, key.subject_id)


class Probe:
    def __init__(self, data_dir: Path) -> None:
        settings = Settings.from_env({}, data_dir=data_dir, worker_enabled=False, log_level="warning")
        self.runtime = Runtime(settings)
        self.store = self.runtime.store
        self.now = system_clock()
        self.policy = self.runtime.policy.settings
        self.campaign_id = f"cmp_{secrets.token_hex(8)}"

    def keys_for(self, start: int, stop: int) -> tuple[list[SubjectKey], float]:
        """The subjects of seed indexes [start, stop), in campaign order, and the CPU seconds the
        directory took to find them (each subject once, as in a campaign: no cache hits)."""
        refs = [self.store.pseudonyms.subject_ref(f"{seed.USER_PREFIX}{i}") for i in range(start, stop)]
        cpu = time.process_time()
        found = self.store.directory.resolve_many(refs)
        return [found[r] for r in refs], time.process_time() - cpu

    def build_prototype(self, keys: Sequence[SubjectKey]) -> None:
        """`subject_rows` for the subjects given, from today's tables."""

        def unit(conn: Connection) -> None:
            for statement in _PROTOTYPE_SCHEMA:
                conn.execute(statement.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
            for start in range(0, len(keys), 2000):
                chunk = keys[start : start + 2000]
                states = subject_state.load_many(conn, chunk, self.now, self.policy, "UTC", StateParts.ALL)
                conn.executemany(
                    "INSERT OR REPLACE INTO subject_rows (subject_id, sealed) VALUES (?, ?)",
                    [(k.subject_id, self._seal_state(k, states[k.subject_id])) for k in chunk],
                )

        self.store.data.writer.run_sync(unit)

    def today(self, keys: Sequence[SubjectKey], seq0: int) -> None:
        def unit(conn: Connection) -> None:
            states = subject_state.load_many(conn, keys, self.now, self.policy, "UTC", StateParts.ALL)
            rows: list[PushRow] = []
            due: list[tuple[str, datetime]] = []
            for seq, key in enumerate(keys, seq0):
                accepted = "marketing" in states[key.subject_id].consents
                push_id = pushes.new_push_id(self.now)
                content = None
                if accepted:
                    sealed = msgspec.json.encode(_CONTENT)
                    content = key.cipher.seal(sealed, pushes.content_aad(push_id, key))
                    due.append((push_id, self.now))
                rows.append(self._push_row(push_id, key, seq, accepted, content))
            pushes.insert_many(conn, rows)
            outbox.enqueue_many(conn, due)

        self.store.data.writer.run_sync(unit)

    def proposed(self, keys: Sequence[SubjectKey], seq0: int) -> None:
        def unit(conn: Connection) -> None:
            by_id = {k.subject_id: k for k in keys}
            states: dict[str, SubjectState] = {}
            for marks, ids in in_chunks(list(by_id)):
                for sid, sealed in conn.execute(
                    f"SELECT subject_id, sealed FROM subject_rows WHERE subject_id IN ({marks})",  # noqa: S608
                    ids,
                ):
                    key = by_id[sid]
                    states[sid] = msgspec.msgpack.decode(
                        key.cipher.open(sealed, _row_aad(key)), type=SubjectState
                    )
            recipients: list[tuple[object, ...]] = []
            changed: list[tuple[bytes, str]] = []
            due: list[tuple[str, datetime]] = []
            stamp = self.now.isoformat()
            for seq, key in enumerate(keys, seq0):
                state = states[key.subject_id]
                if "marketing" in state.consents:
                    push_id = pushes.new_push_id(self.now)
                    why = key.cipher.seal(
                        msgspec.msgpack.encode(_WHY), field_aad("recipients", "why", push_id, key.subject_id)
                    )
                    recipients.append(
                        (self.campaign_id, seq, key.subject_id, "queued", "queued", "[]", stamp, why)
                    )
                    state = msgspec.structs.replace(
                        state, scheduled=(*state.scheduled, Scheduled(self.now, TOPIC, True))
                    )
                    changed.append((self._seal_state(key, state), key.subject_id))
                    due.append((push_id, self.now))
                else:
                    recipients.append(
                        (self.campaign_id, seq, key.subject_id, "rejected", "rejected", _REJECTED, None, None)
                    )
            conn.executemany("INSERT INTO recipients VALUES (?, ?, ?, ?, ?, ?, ?, ?)", recipients)
            conn.executemany("UPDATE subject_rows SET sealed = ? WHERE subject_id = ?", changed)
            outbox.enqueue_many(conn, due)

        self.store.data.writer.run_sync(unit)

    def _seal_state(self, key: SubjectKey, state: SubjectState) -> bytes:
        return key.cipher.seal(msgspec.msgpack.encode(state), _row_aad(key))

    def _push_row(
        self, push_id: str, key: SubjectKey, seq: int, accepted: bool, content: bytes | None
    ) -> PushRow:
        stamp = self.now.isoformat()
        return PushRow(
            push_id=push_id, key_id="probe", idempotency_key=f"{self.campaign_id}-{seq}",
            fingerprint=secrets.token_bytes(32), subject_id=key.subject_id, topic=TOPIC,
            campaign_id=self.campaign_id, variant="A" if seq % 2 else "B",
            outcome="queued" if accepted else "rejected", status="queued" if accepted else "rejected",
            reasons="[]" if accepted else _REJECTED, allowed_by="[]",
            planned_at=stamp if accepted else None, deliver_after=None,
            expires_at=stamp, created_at=stamp, updated_at=stamp, policy_version=1, content=content,
        )  # fmt: skip

    def close(self) -> None:
        self.runtime.close()


def _cpu(step: Callable[[Sequence[SubjectKey], int], None], keys: Sequence[SubjectKey], seq0: int) -> float:
    """CPU seconds of one step, every thread of the process (the writer, its syncer)."""
    cpu = time.process_time()
    step(keys, seq0)
    return time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeded", type=Path, required=True, help="a directory made by bench/seed.py")
    parser.add_argument("--subjects", type=int, required=True, help="how many subjects the seed holds")
    parser.add_argument("--batches", type=int, default=3, help="pairs of 10,000-subject batches")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cgw-layout-"))
    shutil.copytree(args.seeded, work / "data")
    probe = Probe(work / "data")
    try:
        if 2 * args.batches * BATCH > args.subjects:
            parser.error("--batches: each batch takes 10,000 subjects of the seed no batch took before")
        started = time.perf_counter()
        for start in range(0, args.subjects, 100_000):
            keys, _ = probe.keys_for(start, min(start + 100_000, args.subjects))
            probe.build_prototype(keys)
        print(f"prototype rows for {args.subjects:,} subjects built in {time.perf_counter() - started:.1f} s")
        today: list[float] = []
        proposed: list[float] = []
        directory: list[float] = []
        for pair in range(args.batches):
            for layout, results in (("today", today), ("proposed", proposed)):
                start = (2 * pair + (layout == "proposed")) * BATCH
                batch_keys, found_cpu = probe.keys_for(start, start + BATCH)
                directory.append(found_cpu)
                step = probe.today if layout == "today" else probe.proposed
                results.append(_cpu(step, batch_keys, start) / BATCH * 1e6)
        print("µs CPU per decision, storage only (pairs interleaved):")
        print(f"  today    {' / '.join(f'{x:.1f}' for x in today)}  median {statistics.median(today):.1f}")
        print(
            f"  proposed {' / '.join(f'{x:.1f}' for x in proposed)}  median {statistics.median(proposed):.1f}"
        )
        print(f"  directory (both) median {statistics.median(directory) / BATCH * 1e6:.1f}")
    finally:
        probe.close()
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
