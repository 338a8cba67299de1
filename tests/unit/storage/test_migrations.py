"""Migrations on a database that already holds data: what an upgrade finds must survive it.

Each test builds a real SQLCipher file at the migration before the one under test, writes rows
the way the repositories do, then lets `migrate` finish the list, as a restarted gateway would.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from policies.engine import StateParts
from policies.settings import PolicySettings
from storage import outbox
from storage.connections import Connection, connect, in_chunks
from storage.crypto import FieldCipher, KeyedHash, Keyring, new_data_key
from storage.directory import SubjectKey
from storage.migrations import DATA_MIGRATIONS, DIRECTORY_MIGRATIONS, migrate
from storage.repositories import policy, pushes, subject_state
from storage.repositories.pushes import ACCEPTED, PushRow

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def _push(conn: Connection, push_id: str, campaign_id: str | None) -> None:
    stamp = NOW.isoformat()
    row = PushRow(
        push_id=push_id, key_id="key_1", idempotency_key=push_id, fingerprint=b"f" * 32, subject_id=None,
        topic="transactional", campaign_id=campaign_id, variant=None, outcome="queued", status="queued",
        reasons="[]", allowed_by="[]", planned_at=stamp, deliver_after=None,
        expires_at="2026-12-03T10:00:00+00:00", created_at=stamp, updated_at=stamp, policy_version=1,
        content=None,
    )  # fmt: skip
    # The columns the table has at the migration the test stopped at: later ones are not there yet.
    columns = {r[1] for r in conn.execute("PRAGMA table_info(pushes)")}
    values = {k: v for k, v in msgspec.structs.asdict(row).items() if k in columns}
    conn.execute(
        f"INSERT INTO pushes ({', '.join(values)}) VALUES ({','.join('?' * len(values))})",  # noqa: S608
        tuple(values.values()),
    )


def test_partial_campaign_index_keeps_the_queue_and_serves_campaign_queries(tmp_path: Path) -> None:
    path, key = tmp_path / "gateway.db", secrets.token_bytes(32)
    conn = connect(path, key)
    migrate(conn, [m for m in DATA_MIGRATIONS if m[0] != "0010_partial_campaign_index"])
    conn.execute("BEGIN")
    _push(conn, "psh_1", None)
    _push(conn, "psh_2", "cmp_1")
    outbox.enqueue_many(conn, [("psh_1", NOW), ("psh_2", NOW)])
    conn.execute("COMMIT")

    assert migrate(conn, DATA_MIGRATIONS) == ["0010_partial_campaign_index"]

    (index,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'idx_pushes_campaign_id_variant'"
    ).fetchone()
    assert "WHERE campaign_id IS NOT NULL" in index
    for query in (
        "SELECT count(*) FROM pushes WHERE campaign_id = ?",
        "SELECT count(*) FROM pushes WHERE campaign_id = ? AND status = 'delivered'",
    ):
        plan = " ".join(str(step[3]) for step in conn.execute(f"EXPLAIN QUERY PLAN {query}", ("cmp_1",)))
        assert "idx_pushes_campaign_id_variant" in plan, query
    assert conn.execute("SELECT count(*) FROM pushes WHERE campaign_id = ?", ("cmp_1",)).fetchone() == (1,)
    claimed = outbox.claim(conn, "w1", NOW, timedelta(minutes=1), 10)
    assert [c.push_id for c in claimed] == ["psh_1", "psh_2"]
    assert migrate(conn, DATA_MIGRATIONS) == []  # recorded: a second start changes nothing
    conn.close()


def test_pushes_due_at_once_are_claimed_in_the_order_they_were_queued(tmp_path: Path) -> None:
    """Ids sort by time, then by random bits: pushes queued in one millisecond (or one batch)
    must still come out in arrival order, since the caps judge a subject's pushes in turn."""
    conn = connect(tmp_path / "gateway.db", secrets.token_bytes(32))
    migrate(conn, DATA_MIGRATIONS)
    ids = [f"psh_{n:024x}" for n in (9, 3, 7, 1, 8)]
    conn.execute("BEGIN")
    for push_id in ids:
        _push(conn, push_id, None)
    outbox.enqueue_many(conn, [(push_id, NOW) for push_id in ids])
    conn.execute("COMMIT")
    assert [c.push_id for c in outbox.claim(conn, "w1", NOW, timedelta(minutes=1), 10)] == ids
    conn.close()


def test_wrapping_keys_lists_the_keys_of_data_keys_already_there_and_to_come(tmp_path: Path) -> None:
    """Filled from the subjects an upgrade finds, then kept by triggers: a start reads it instead
    of every subject to learn which key-encryption keys it needs."""
    ring = Keyring({"kek-1": secrets.token_bytes(32), "hsm-2024": secrets.token_bytes(32)}, "kek-1")
    conn = connect(tmp_path / "subjects.db", secrets.token_bytes(32))
    migrate(conn, [m for m in DIRECTORY_MIGRATIONS if m[0] != "0003_wrapping_keys"])

    def add(ref: str) -> None:
        wrapped = ring.wrap(b"k" * 32, b"aad")
        conn.execute("INSERT INTO subjects VALUES (?, ?, ?, ?)", (ref, ref, wrapped, NOW.isoformat()))

    add("ref_1")
    add("ref_2")
    assert migrate(conn, DIRECTORY_MIGRATIONS) == ["0003_wrapping_keys"]
    listed = "SELECT prefix FROM wrapping_keys ORDER BY prefix"
    assert conn.execute(listed).fetchall() == [(b"\x01\x05kek-1",)]
    ring.active = "hsm-2024"
    add("ref_3")
    rewrapped = ring.wrap(b"k" * 32, b"aad")
    conn.execute("UPDATE subjects SET wrapped_key = ? WHERE subject_ref = 'ref_1'", (rewrapped,))
    assert conn.execute(listed).fetchall() == [(b"\x01\x05kek-1",), (b"\x01\x08hsm-2024",)]
    long_id = "k" * 200  # a length byte past 0x7f, read through its hex digits
    ring.merge({long_id: secrets.token_bytes(32)}, long_id)
    add("ref_4")
    assert (b"\x01\xc8" + long_id.encode(),) in conn.execute(listed).fetchall()
    conn.close()


def test_erasure_days_keep_the_day_of_finished_erasures_and_the_moment_of_pending_ones(
    tmp_path: Path,
) -> None:
    """A finished erasure's moment is its ledger event's, which names the subject's internal id;
    a pending one's is what its cleanup still writes into that event."""
    conn = connect(tmp_path / "subjects.db", secrets.token_bytes(32))
    migrate(conn, [m for m in DIRECTORY_MIGRATIONS if m[0] != "0004_erasure_days"])
    conn.execute("BEGIN")
    for ref, at, pending in (
        ("sub_done", "2026-11-23T11:07:42.123456+00:00", None),
        ("sub_midnight", "2026-11-23T00:00:00+00:00", None),
        ("sub_other_zone", "2026-11-23T23:30:00-02:00", None),
        ("sub_pending", "2026-11-23T11:08:00.5+00:00", "s_pending"),
    ):
        conn.execute(
            "INSERT INTO tombstones (subject_ref, erased_at, pending_subject_id, pending_actor) "
            "VALUES (?, ?, ?, ?)",
            (ref, at, pending, None if pending is None else "user"),
        )
    conn.execute("COMMIT")

    assert migrate(conn, DIRECTORY_MIGRATIONS) == ["0004_erasure_days"]

    assert dict(conn.execute("SELECT subject_ref, erased_at FROM tombstones").fetchall()) == {
        "sub_done": "2026-11-24T00:00:00+00:00",
        "sub_midnight": "2026-11-23T00:00:00+00:00",
        "sub_other_zone": "2026-11-25T00:00:00+00:00",
        "sub_pending": "2026-11-23T11:08:00.5+00:00",
    }


def test_tombstones_are_stored_in_the_order_of_their_refs_not_of_erasure(tmp_path: Path) -> None:
    """Read past any index (`NOT INDEXED`): a rowid table gives its rows in the order they were
    written, which is the order of the erasures, as the ledger's `subject.erased` events are."""
    conn = connect(tmp_path / "subjects.db", secrets.token_bytes(32))
    migrate(conn, [m for m in DIRECTORY_MIGRATIONS if m[0] != "0004_erasure_days"])
    conn.execute("BEGIN")
    for ref in ("sub_c", "sub_a", "sub_b"):
        conn.execute("INSERT INTO tombstones (subject_ref, erased_at) VALUES (?, ?)", (ref, NOW.isoformat()))
    conn.execute("COMMIT")
    physical = "SELECT subject_ref FROM tombstones NOT INDEXED"
    assert [r for (r,) in conn.execute(physical)] == ["sub_c", "sub_a", "sub_b"]

    assert migrate(conn, DIRECTORY_MIGRATIONS) == ["0004_erasure_days"]

    assert [r for (r,) in conn.execute(physical)] == ["sub_a", "sub_b", "sub_c"]
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'tombstones'").fetchone()
    assert "WITHOUT ROWID" in sql


def test_a_tombstone_whose_time_does_not_read_does_not_stop_the_migration(tmp_path: Path) -> None:
    conn = connect(tmp_path / "subjects.db", secrets.token_bytes(32))
    migrate(conn, [m for m in DIRECTORY_MIGRATIONS if m[0] != "0004_erasure_days"])
    conn.execute("BEGIN")
    conn.execute("INSERT INTO tombstones (subject_ref, erased_at) VALUES ('sub_bad', 'garbage')")
    conn.execute(
        "INSERT INTO tombstones (subject_ref, erased_at) VALUES ('sub_naive', '2026-11-23T10:00:00')"
    )
    conn.execute("COMMIT")

    assert migrate(conn, DIRECTORY_MIGRATIONS) == ["0004_erasure_days"]

    days = dict(conn.execute("SELECT subject_ref, erased_at FROM tombstones").fetchall())
    assert days["sub_naive"] == "2026-11-24T00:00:00+00:00"
    assert datetime.fromisoformat(days["sub_bad"]) > datetime.now(UTC)  # the day after the migration


def test_why_kept_in_clear_loses_the_subjects_settings(tmp_path: Path) -> None:
    """`allowed_by` named a subject's quiet hours, time zone and caps in clear; after 0018 it
    still says what let each push through, in the same order, without them."""
    conn = connect(tmp_path / "gateway.db", secrets.token_bytes(32))
    migrate(conn, [m for m in DATA_MIGRATIONS if m[0] != "0018_why_without_settings"])
    why = [
        "consent:marketing", "topic:promotions on", "quiet hours: outside 03:17-03:19 Pacific/Chatham",
        "frequency: 1 of 2 this week", "frequency: 1 of 1 today",
    ]  # fmt: skip
    conn.execute("BEGIN")
    _push(conn, "psh_1", None)
    _push(conn, "psh_2", None)
    conn.execute("UPDATE pushes SET allowed_by = ? WHERE push_id = 'psh_1'", (json.dumps(why),))
    conn.execute(
        "UPDATE pushes SET allowed_by = ? WHERE push_id = 'psh_2'", ('["topic:transactional (contract)"]',)
    )
    _push(conn, "psh_3", None)  # not JSON: left as it is, and the upgrade goes on
    conn.execute("UPDATE pushes SET allowed_by = 'quiet hours: [' WHERE push_id = 'psh_3'")
    conn.execute("COMMIT")

    assert migrate(conn, DATA_MIGRATIONS) == ["0018_why_without_settings"]

    rows = dict(conn.execute("SELECT push_id, allowed_by FROM pushes"))
    assert json.loads(rows["psh_1"]) == [
        "consent:marketing", "topic:promotions on", "quiet hours: outside",
        "frequency: under the weekly cap", "frequency: under the daily cap",
    ]  # fmt: skip
    assert json.loads(rows["psh_2"]) == ["topic:transactional (contract)"]
    assert rows["psh_3"] == "quiet hours: ["
    conn.close()


def test_a_campaign_resumed_before_0016_stops_the_pushes_decided_before_its_pause(tmp_path: Path) -> None:
    """0016 marked only the campaigns paused at the upgrade: one paused and resumed before kept
    no mark, and a push deferred past the resume went out."""
    conn = connect(tmp_path / "gateway.db", secrets.token_bytes(32))
    migrate(conn, [m for m in DATA_MIGRATIONS if m[0] < "0019"])
    conn.execute("BEGIN")
    for campaign_id, resumed_at in (("cmp_resumed", "2026-12-02T10:30:00+00:00"), ("cmp_never", None)):
        conn.execute(
            "INSERT INTO campaigns (campaign_id, name, topic, status, created_by, created_at, resumed_at) "
            "VALUES (?, 'c', 'promotions', 'active', 'key_1', '2026-12-01T00:00:00+00:00', ?)",
            (campaign_id, resumed_at),
        )
    conn.execute(
        "INSERT INTO campaigns (campaign_id, name, topic, status, created_by, created_at, resumed_at, "
        "paused_through) VALUES ('cmp_marked', 'c', 'promotions', 'active', 'key_1', "
        "'2026-12-01T00:00:00+00:00', '2026-12-02T10:30:00+00:00', 1)"
    )
    for n, created_at in enumerate(("2026-12-02T09:00:00+00:00", "2026-12-02T10:00:00+00:00",
                                    "2026-12-02T11:00:00+00:00"), start=1):  # fmt: skip
        _push(conn, f"psh_{n}", "cmp_resumed")
        conn.execute("UPDATE pushes SET created_at = ? WHERE push_id = ?", (created_at, f"psh_{n}"))
    conn.execute("COMMIT")

    assert migrate(conn, DATA_MIGRATIONS)[0] == "0019_paused_through_before_resume"

    marks = dict(conn.execute("SELECT campaign_id, paused_through FROM campaigns"))
    assert marks == {"cmp_resumed": 2, "cmp_never": None, "cmp_marked": 1}
    conn.close()


def test_subjects_erased_before_their_pushes_were_blanked_are_blanked_at_the_upgrade(tmp_path: Path) -> None:
    """Erasure blanks the settings a subject's pushes tell of (a quiet window's end, a cap, the
    deferral, the fingerprint); subjects erased before it did kept them after the upgrade."""
    conn = connect(tmp_path / "gateway.db", secrets.token_bytes(32))
    migrate(conn, [m for m in DATA_MIGRATIONS if m[0] < "0020"])
    reasons = '[{"code":"quiet_hours","until":"2026-12-03T06:15:00Z"},{"code":"frequency_capped","limit":3}]'
    conn.execute("BEGIN")
    for subject_id in ("s_erased", "s_live"):
        push_id = f"psh_{subject_id}"
        _push(conn, push_id, None)
        conn.execute(
            "UPDATE pushes SET subject_id = ?, reasons = ?, deliver_after = '2026-12-03T06:15:00+00:00', "
            "planned_at = '2026-12-03T06:15:00+00:00', allowed_by = '[\"quiet hours: outside\"]' "
            "WHERE push_id = ?",
            (subject_id, reasons, push_id),
        )
        outbox.enqueue_many(conn, [(push_id, datetime(2026, 12, 3, 6, 15, tzinfo=UTC))])
    conn.execute(
        "INSERT INTO ledger (seq, at, subject_id, kind, actor, source, prev_hash, hash) VALUES "
        "(1, '2026-12-02T12:00:00+00:00', 's_erased', 'subject.erased', 'user', 'erasure', X'00', X'01')"
    )
    conn.execute("COMMIT")

    assert migrate(conn, DATA_MIGRATIONS)[0] == "0020_forget_settings_of_the_erased"

    rows = {
        sid: (fingerprint, json.loads(why), json.loads(kept), deliver_after, planned_at)
        for sid, fingerprint, why, kept, deliver_after, planned_at in conn.execute(
            "SELECT subject_id, fingerprint, allowed_by, reasons, deliver_after, planned_at FROM pushes"
        )
    }
    assert rows["s_erased"] == (
        b"",
        [],
        [{"code": "quiet_hours"}, {"code": "frequency_capped"}],
        None,
        NOW.isoformat(),
    )
    assert rows["s_live"][2] == json.loads(reasons)
    assert rows["s_live"][3] == "2026-12-03T06:15:00+00:00"
    due = dict(conn.execute("SELECT push_id, due_at FROM outbox"))
    assert due == {"psh_s_erased": NOW.isoformat(), "psh_s_live": "2026-12-03T06:15:00+00:00"}
    conn.close()


def test_policy_quiet_times_in_other_digits_become_ascii(tmp_path: Path) -> None:
    """HH:MM took any script's digits (`\\d`); held to ASCII now, a policy saved with others would
    no longer decode, and the gateway would not start on it."""
    conn = connect(tmp_path / "gateway.db", secrets.token_bytes(32))
    migrate(conn, [m for m in DATA_MIGRATIONS if m[0] < "0021"])
    saved = msgspec.json.encode(PolicySettings(max_per_week=2)).decode()
    other = saved.replace('"21:00"', '"21:0\u0660"').replace('"08:00"', '"0\u0668:00"')
    assert other != saved
    conn.execute("BEGIN")
    for version, settings in ((1, other), (2, saved)):
        conn.execute(
            "INSERT INTO policy_versions (version, settings, changed_by, changed_at) "
            "VALUES (?, ?, 'admin', ?)",
            (version, settings, NOW.isoformat()),
        )
    conn.execute("COMMIT")

    assert migrate(conn, DATA_MIGRATIONS)[0] == "0021_ascii_quiet_times"

    assert policy.stored(conn, 1) == policy.StoredVersion(1, saved, "admin", NOW.isoformat())
    assert policy.current(conn).settings == PolicySettings(max_per_week=2)
    conn.close()


def test_devices_active_again_lose_the_time_they_came_back_as_disabled_at(tmp_path: Path) -> None:
    """A device registered again after it was disabled kept `disabled_at`, set to the moment it
    came back, which the export showed as when it stopped getting pushes."""
    conn = connect(tmp_path / "gateway.db", secrets.token_bytes(32))
    migrate(conn, [m for m in DATA_MIGRATIONS if m[0] < "0022"])
    conn.execute("BEGIN")
    for device_id, status in (("dev_back", "active"), ("dev_off", "disabled")):
        conn.execute(
            "INSERT INTO devices (device_id, subject_id, platform, token, fingerprint, status, created_at, "
            "disabled_at) VALUES (?, 'sid', 'fcm', X'00', X'00', ?, ?, ?)",
            (device_id, status, NOW.isoformat(), (NOW + timedelta(hours=1)).isoformat()),
        )
    conn.execute("COMMIT")

    assert migrate(conn, DATA_MIGRATIONS)[0] == "0022_active_devices_not_disabled"

    found = dict(conn.execute("SELECT device_id, disabled_at FROM devices").fetchall())
    assert found == {"dev_back": None, "dev_off": (NOW + timedelta(hours=1)).isoformat()}
    conn.close()


def test_opt_outs_the_ledger_holds_are_kept_on_their_pushes(tmp_path: Path) -> None:
    """Counted from the consents as they are until 0023, which lost those a later grant or an
    erasure overwrote: the ledger still holds each withdrawal, so each push a device had before
    its subject withdrew is marked, as `mark_opted_out` marks them from then on."""
    conn = connect(tmp_path / "gateway.db", secrets.token_bytes(32))
    migrate(conn, [m for m in DATA_MIGRATIONS if m[0] < "0023"])
    at = NOW.isoformat
    later = (NOW + timedelta(hours=1)).isoformat()
    withdrawn = (NOW + timedelta(minutes=30)).isoformat()
    conn.execute("BEGIN")
    pushes = (  # push, subject, campaign, status, updated_at
        ("psh_left", "s_left", "cmp_1", "delivered", at()),  # withdrew after it came: counted
        ("psh_back", "s_back", "cmp_1", "delivered", at()),  # withdrew, then consented again
        ("psh_before", "s_before", "cmp_1", "delivered", later),  # withdrew before it came
        ("psh_stays", "s_stays", "cmp_1", "delivered", at()),  # never withdrew
        ("psh_other", "s_left", None, "delivered", at()),  # not a campaign's
        ("psh_stopped", "s_left", "cmp_1", "rejected", at()),  # never delivered
        ("psh_phone", "s_left", "cmp_1", "sending", later),  # the phone had it, the relay not yet
        ("psh_none", "s_left", "cmp_1", "sending", later),  # no device had it
    )
    for push_id, subject_id, campaign_id, status, updated in pushes:
        conn.execute(
            "INSERT INTO pushes (push_id, key_id, idempotency_key, fingerprint, subject_id, topic, "
            "campaign_id, outcome, status, reasons, allowed_by, expires_at, created_at, updated_at, "
            "policy_version) "
            "VALUES (?, 'k', ?, X'00', ?, 'promotions', ?, 'queued', ?, '[]', '[]', ?, ?, ?, 1)",
            (push_id, push_id, subject_id, campaign_id, status, later, at(), updated),
        )
    conn.execute(
        "INSERT INTO deliveries (push_id, device_id, adapter, status, attempts, updated_at) "
        "VALUES ('psh_phone', 'dev_1', 'fcm', 'delivered', 1, ?), "
        "('psh_none', 'dev_1', 'fcm', 'retry', 1, ?)",
        (at(), at()),
    )
    events = (  # subject, kind, at
        ("s_left", "consent.withdrawn", withdrawn),
        ("s_back", "consent.withdrawn", withdrawn),
        ("s_back", "consent.given", later),
        ("s_before", "consent.withdrawn", withdrawn),
        ("s_stays", "consent.given", withdrawn),
    )
    for seq, (subject_id, kind, moment) in enumerate(events, 1):
        conn.execute(
            "INSERT INTO ledger (seq, at, subject_id, kind, purpose, actor, source, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, 'marketing', 'user', 'test', X'00', X'00')",
            (seq, moment, subject_id, kind),
        )
    conn.execute("COMMIT")

    assert migrate(conn, DATA_MIGRATIONS)[0] == "0023_opted_out"

    marked = {p for (p,) in conn.execute("SELECT push_id FROM pushes WHERE opted_out = 1")}
    assert marked == {"psh_left", "psh_back", "psh_phone"}
    conn.close()


def test_one_subject_index_serves_the_caps_without_reading_transactional_pushes(tmp_path: Path) -> None:
    """0024 folds the caps' index into the subject index. The caps' query must still seek a
    subject's marketing pushes in the window alone: one subject with 300 transactional pushes in
    it, beside one with none, reads the same state (and the plan says how it is read)."""
    conn = connect(tmp_path / "gateway.db", secrets.token_bytes(32))
    migrate(conn, [m for m in DATA_MIGRATIONS if m[0] < "0024"])
    pushes_of = [  # push, subject, topic, status, planned_at
        ("psh_m1", "s_busy", "promotions", "queued", NOW),
        ("psh_m2", "s_busy", "flash_sales", "delivered", NOW - timedelta(days=2)),
        ("psh_old", "s_busy", "promotions", "delivered", NOW - timedelta(days=30)),  # before the window
        ("psh_no", "s_busy", "promotions", "rejected", None),  # never planned
        ("psh_q1", "s_quiet", "product_tips", "queued", NOW + timedelta(hours=3)),
    ]
    pushes_of += [
        (f"psh_t{n}", "s_busy", "transactional", "delivered", NOW - timedelta(minutes=n)) for n in range(300)
    ]
    conn.execute("BEGIN")
    for push_id, subject_id, topic, status, planned in pushes_of:
        conn.execute(
            "INSERT INTO pushes (push_id, key_id, idempotency_key, fingerprint, subject_id, topic, "
            "outcome, status, reasons, allowed_by, planned_at, expires_at, created_at, updated_at, "
            "policy_version) VALUES (?, 'k', ?, X'00', ?, ?, ?, ?, '[]', '[]', ?, ?, ?, ?, 1)",
            (push_id, push_id, subject_id, topic, status, status,
             None if planned is None else planned.isoformat(), (NOW + timedelta(days=1)).isoformat(),
             NOW.isoformat(), NOW.isoformat()),
        )  # fmt: skip
    conn.execute("COMMIT")
    keys = [SubjectKey(f"ref_{sid}", sid, FieldCipher(new_data_key())) for sid in ("s_busy", "s_quiet")]

    def scheduled() -> dict[str, set[str | None]]:
        states = subject_state.load_many(conn, keys, NOW, PolicySettings(), "UTC", StateParts.ALL)
        return {sid: {item.push_id for item in state.scheduled} for sid, state in states.items()}

    before = scheduled()
    assert migrate(conn, DATA_MIGRATIONS)[0] == "0024_one_subject_index"

    assert scheduled() == before == {"s_busy": {"psh_m1", "psh_m2"}, "s_quiet": {"psh_q1"}}
    indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'pushes'")}
    assert "pushes_subject" in indexes
    assert not {"pushes_planned_marketing", "idx_pushes_subject_id_planned_at"} & indexes
    ((marks, ids),) = in_chunks(["s_busy", "s_quiet"])
    query = subject_state.PLANNED_MARKETING.format(marks=marks)

    def plan(query: str, args: tuple[str, ...]) -> str:
        return " ".join(str(step[3]) for step in conn.execute(f"EXPLAIN QUERY PLAN {query}", args))

    assert "pushes_subject (subject_id=? AND <expr>=? AND planned_at>? AND planned_at<?)" in plan(
        query, (*ids, "a", "b", *ACCEPTED)
    )
    for by_subject in (
        "SELECT push_id FROM pushes WHERE subject_id = ? ORDER BY created_at, push_id",
        "DELETE FROM pushes WHERE subject_id = ?",
    ):
        assert "pushes_subject (subject_id=?)" in plan(by_subject, ("s_busy",)), by_subject
    conn.close()


def test_idempotency_refs_stored_whole_before_0025_still_find_their_pushes(tmp_path: Path) -> None:
    """0025 cuts the refs stored before it to the 128 bits `idempotency_ref` now makes: a replay
    after the upgrade must find the push it repeats, not make a second."""
    conn = connect(tmp_path / "gateway.db", secrets.token_bytes(32))
    migrate(conn, [m for m in DATA_MIGRATIONS if m[0] < "0025"])
    keyed = KeyedHash(secrets.token_bytes(32), b"idempotency|")
    conn.execute("BEGIN")
    for push_id, key in (("psh_a", "order-1"), ("psh_b", "order-2")):
        _push(conn, push_id, None)
        whole = keyed.digest(key.encode()).hex()  # as the gateway stored it until 0025
        conn.execute("UPDATE pushes SET idempotency_key = ? WHERE push_id = ?", (whole, push_id))
    # A service's own keys, stored as they came before refs were hashed: 64 characters alike in
    # their first 32, which a cut would make one key twice.
    prefix = "refund-for-order-2026-12-06-4411"  # 32 characters
    raw = [prefix + f"-paid-to-the-card-ending-{card}".rjust(32, "-") for card in ("1234", "9876")]
    for push_id, key in zip(("psh_r1", "psh_r2"), raw, strict=True):
        _push(conn, push_id, None)
        conn.execute("UPDATE pushes SET idempotency_key = ? WHERE push_id = ?", (key, push_id))
    conn.execute("COMMIT")

    assert migrate(conn, DATA_MIGRATIONS)[0] == "0025_shorter_idempotency_refs"

    refs = {key: pushes.idempotency_ref(keyed, key) for key in ("order-1", "order-2", "order-3")}
    found = pushes.find_idempotent_many(conn, "key_1", list(refs.values()))
    assert {ref: row.push_id for ref, row in found.items()} == {
        refs["order-1"]: "psh_a", refs["order-2"]: "psh_b",
    }  # fmt: skip
    assert {len(ref) for ref in refs.values()} == {32}
    kept = conn.execute("SELECT idempotency_key FROM pushes WHERE push_id IN ('psh_r1', 'psh_r2')").fetchall()
    assert sorted(key for (key,) in kept) == raw


def test_pushes_stored_before_0026_show_their_planned_time_and_are_scanned_again(tmp_path: Path) -> None:
    conn = connect(tmp_path / "gateway.db", secrets.token_bytes(32))
    migrate(conn, [m for m in DATA_MIGRATIONS if m[0] < "0026"])
    conn.execute("BEGIN")
    _push(conn, "psh_1", None)
    conn.execute("COMMIT")

    assert migrate(conn, DATA_MIGRATIONS) == ["0026_sent_at", "0027_content_key"]

    row = pushes.get(conn, "psh_1")
    assert row is not None
    assert (row.sent_at, row.shown_at) == (None, NOW.isoformat())
    assert row.content_key is None  # dispatch scans its content again
    conn.close()
