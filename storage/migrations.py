"""Versioned schema migrations, applied once each at start and recorded in `_migrations`.

Each migration is a small function over a `sqlite_utils.Database`; re-running is a no-op.
The data database and the subject directory have separate lists because they are separate
files with separate keys. SQL stays portable (no SQLite-only types in columns the
repositories read), so a PostgreSQL backend can follow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from storage.connections import Connection, when_free
from storage.crypto import WRAP_PREFIX_SQL
from storage.directory import erasure_day

__all__ = [
    "DATA_MIGRATIONS", "DIRECTORY_MIGRATIONS", "SchemaError", "migrate",
    "require_migrated",
]  # fmt: skip

Migration = tuple[str, Callable[[sqlite_utils.Database], None]]


class SchemaError(Exception):
    """A database whose recorded migrations are not this code's: migrated by a newer version,
    whose tables this code would misread or break (a column it does not fill, a table it does not
    know), or, for a command that must change nothing, not yet migrated to this version."""


def migrate(conn: Connection, migrations: Sequence[Migration]) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; returns their names.

    Whether one is recorded is read inside its transaction, after waiting for the write lock:
    another process starting on the same files may be applying it (`when_free`). A database that
    records a migration not in `migrations` is refused first (`SchemaError`). One that records
    them all is not written to, so a start waits for no other process's write lock."""
    _refuse_newer(conn, migrations)
    recorded = _recorded(conn)
    db = sqlite_utils.Database(conn)
    applied = []
    for name, step in (m for m in migrations if m[0] not in recorded):
        when_free(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                conn.execute("COMMIT")
                continue
            step(db)
            conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (name, datetime.now(UTC).isoformat()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def require_migrated(conn: Connection, migrations: Sequence[Migration]) -> None:
    """Refuse (`SchemaError`) a database that is not at exactly this version, instead of
    migrating it: for the commands documented to create and change nothing (`audit ...`)."""
    _refuse_newer(conn, migrations)
    recorded = _recorded(conn)
    if pending := [name for name, _ in migrations if name not in recorded]:
        raise SchemaError(
            f"{_file_name(conn)} has migrations pending ({', '.join(pending)}), which this command "
            "does not apply: `consent-gateway serve` applies them (as do `worker`, `keys create` and `token`)"
        )


def _refuse_newer(conn: Connection, migrations: Sequence[Migration]) -> None:
    if newer := sorted(_recorded(conn) - {name for name, _ in migrations}):
        raise SchemaError(
            f"{_file_name(conn)} was migrated by a newer version ({', '.join(newer)}): "
            "run that version, or restore a backup taken before it ran"
        )


def _recorded(conn: Connection) -> set[str]:
    """The names in `_migrations`; none in a database that was never migrated. Read with
    `when_free`, as the writes are: the writer's connection answers busy at once, and another
    process starting on the same files may hold a lock that keeps readers out for a moment (one
    start in a few hundred of two together failed here with "database is locked")."""

    def read() -> set[str]:
        table = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'"
        if conn.execute(table).fetchone() is None:
            return set()
        return {name for (name,) in conn.execute("SELECT name FROM _migrations")}

    return when_free(read)


def _file_name(conn: Connection) -> str:
    """The connection's database file name ("gateway.db"), for messages that must say which."""
    path = next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "")
    return Path(path).name or "the database"


def _core(db: sqlite_utils.Database) -> None:
    db.table("api_keys").create(
        {
            "key_id": str,
            "name": str,
            "scopes": str,
            "secret_hash": bytes,
            "created_at": str,
            "revoked_at": str,
        },
        pk="key_id",
        not_null={"name", "scopes", "secret_hash", "created_at"},
    )
    db.table("consents").create(
        {"subject_id": str, "purpose": str, "granted": int, "notice_version": str, "updated_at": str},
        pk=("subject_id", "purpose"),
        not_null={"granted", "notice_version", "updated_at"},
    )
    db.table("preferences").create(
        {"subject_id": str, "doc": bytes, "updated_at": str}, pk="subject_id", not_null={"doc", "updated_at"}
    )
    db.table("devices").create(
        {
            "device_id": str,
            "subject_id": str,
            "platform": str,
            "token": bytes,
            "fingerprint": bytes,
            "status": str,
            "created_at": str,
            "disabled_at": str,
        },
        pk="device_id",
        not_null={"subject_id", "platform", "token", "fingerprint", "status", "created_at"},
    )
    db.table("devices").create_index(["subject_id", "status"])
    db.table("locations").create(
        {"subject_id": str, "geohash": bytes, "at": str}, pk="subject_id", not_null={"geohash", "at"}
    )
    db.execute(
        """CREATE TABLE ledger (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            subject_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            purpose TEXT,
            notice_version TEXT,
            actor TEXT NOT NULL,
            source TEXT NOT NULL,
            body BLOB,
            prev_hash BLOB NOT NULL,
            hash BLOB NOT NULL
        )"""
    )
    db.execute("CREATE INDEX ledger_subject ON ledger (subject_id, seq)")
    db.execute("CREATE INDEX ledger_at ON ledger (at)")
    for verb in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER ledger_no_{verb.lower()} BEFORE {verb} ON ledger "
            "BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END"
        )


def _directory(db: sqlite_utils.Database) -> None:
    db.table("subjects").create(
        {"subject_ref": str, "subject_id": str, "wrapped_key": bytes, "created_at": str},
        pk="subject_ref",
        not_null={"subject_id", "wrapped_key", "created_at"},
    )
    db.table("subjects").create_index(["subject_id"], unique=True)
    db.table("tombstones").create(
        {"subject_ref": str, "erased_at": str}, pk="subject_ref", not_null={"erased_at"}
    )


def _pending_erasures(db: sqlite_utils.Database) -> None:
    # An erasure destroys the key here, then deletes the subject's rows and records the erasure
    # in the data file: two files, two transactions. Until the second is durable the tombstone
    # keeps what finishing it needs (the subject id and who asked), so a crash in between is
    # finished at the next start. The partial index holds only those: empty but for a crash, it
    # is what startup reads to find them. Existing tombstones have nothing pending.
    db.table("tombstones").add_column("pending_subject_id", str)
    db.table("tombstones").add_column("pending_actor", str)
    db.execute(
        "CREATE INDEX tombstones_pending ON tombstones (pending_subject_id) "
        "WHERE pending_subject_id IS NOT NULL"
    )


def _wrapping_keys(db: sqlite_utils.Database) -> None:
    # Which key-encryption keys wrap data keys, as wrapped-key prefixes (`WRAP_PREFIX_SQL`): a
    # start refuses a key store lacking one, since every request of those subjects would fail,
    # and must not read every subject to learn it (a scan of subjects.db took ~0.2 s per 100,000
    # rows). Triggers keep it as data keys are written or re-wrapped; a prefix already there is
    # ignored, which writes no page. A re-wrap leaves the old prefix behind: a start whose key
    # store lacks that key looks for a data key still under it, and drops the prefix if none is.
    db.execute("CREATE TABLE wrapping_keys (prefix BLOB PRIMARY KEY) WITHOUT ROWID")
    prefix = WRAP_PREFIX_SQL.format(column="NEW.wrapped_key")
    insert = f"INSERT OR IGNORE INTO wrapping_keys (prefix) VALUES ({prefix})"  # noqa: S608 (our SQL)
    for name, event in (("insert", "INSERT"), ("rewrap", "UPDATE OF wrapped_key")):
        trigger = f"subjects_wrapping_key_{name} AFTER {event} ON subjects"
        db.execute(f"CREATE TRIGGER {trigger} BEGIN {insert}; END")
    existing = WRAP_PREFIX_SQL.format(column="wrapped_key")
    backfill = f"INSERT OR IGNORE INTO wrapping_keys (prefix) SELECT DISTINCT {existing} FROM subjects"  # noqa: S608
    db.execute(backfill)


def _erasure_days(db: sqlite_utils.Database) -> None:
    # Rebuilt WITHOUT ROWID too: rowids in the order of erasure, stored in that order, matched
    # tombstones to the ledger's `subject.erased` events one by one, as the moments did. Keyed by
    # subject_ref alone, the table is stored in the order of the refs, which are keyed hashes.
    # One INSERT ... SELECT through a SQL function, so no table's worth of rows is held in Python.
    db.conn.create_function("erasure_day", 1, _stored_erasure_day)
    db.execute(
        "CREATE TABLE tombstones_by_ref (subject_ref TEXT PRIMARY KEY, erased_at TEXT NOT NULL, "
        "pending_subject_id TEXT, pending_actor TEXT) WITHOUT ROWID"
    )
    db.execute(
        "INSERT INTO tombstones_by_ref SELECT subject_ref, "
        "CASE WHEN pending_subject_id IS NULL THEN erasure_day(erased_at) ELSE erased_at END, "
        "pending_subject_id, pending_actor FROM tombstones"
    )
    db.execute("DROP TABLE tombstones")
    db.execute("ALTER TABLE tombstones_by_ref RENAME TO tombstones")
    db.execute(
        "CREATE INDEX tombstones_pending ON tombstones (pending_subject_id) "
        "WHERE pending_subject_id IS NOT NULL"
    )


def _key_checks(db: sqlite_utils.Database) -> None:
    # What each root key the databases cannot check themselves is known by at each start
    # (`Store`): a value derived from the pseudonym key, the signing key's id. A key store whose
    # pseudonym key was changed by one character opened, said it was ready, and made every user a
    # new subject; one whose signing key was, left no earlier receipt or checkpoint verifiable.
    db.execute("CREATE TABLE key_checks (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")


def _erasures_made(db: sqlite_utils.Database) -> None:
    # How many live subjects were ever erased here, counted in each erasure's transaction: a
    # process trusting cached keys (`SubjectDirectory`) reads this one row to learn that no
    # subject was erased anywhere since it read theirs, where it read every cached subject's row
    # again each second. The tombstones cannot tell it: an erasure followed by a return only
    # rewrites the ref's tombstone. Starts at 0: an upgrade stops every process on the data dir
    # (README), so none holds keys cached under the version before.
    db.execute("CREATE TABLE erasures_made (id INTEGER PRIMARY KEY CHECK (id = 1), total INTEGER NOT NULL)")
    db.execute("INSERT INTO erasures_made (id, total) VALUES (1, 0)")


def _stored_erasure_day(stored: str) -> str:
    """`erasure_day` of a stored time; one that does not read as a time (a hand-edited row) gets
    the day after the migration's, rather than stopping every start until it is mended."""
    try:
        at = datetime.fromisoformat(stored)
    except (TypeError, ValueError):
        at = datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return erasure_day(at)


def _policy(db: sqlite_utils.Database) -> None:
    db.table("policy_versions").create(
        {"version": int, "settings": str, "changed_by": str, "changed_at": str},
        pk="version",
        not_null={"settings", "changed_by", "changed_at"},
    )


def _pushes(db: sqlite_utils.Database) -> None:
    db.table("campaigns").create(
        {
            "campaign_id": str, "name": str, "topic": str, "status": str, "created_by": str,
            "created_at": str, "paused_at": str, "pause_reason": str,
        },
        pk="campaign_id",
        not_null={"name", "topic", "status", "created_by", "created_at"},
    )  # fmt: skip
    db.table("pushes").create(
        {
            "push_id": str, "key_id": str, "idempotency_key": str, "fingerprint": bytes,
            "subject_id": str, "topic": str, "campaign_id": str, "variant": str,
            "outcome": str, "status": str, "reasons": str, "allowed_by": str,
            "planned_at": str, "deliver_after": str, "expires_at": str, "created_at": str,
            "updated_at": str, "policy_version": int, "content": bytes, "attempts": int,
        },
        pk="push_id",
        not_null={"key_id", "idempotency_key", "fingerprint", "topic", "outcome", "status", "reasons",
                  "expires_at", "created_at", "updated_at", "policy_version", "attempts"},
        defaults={"attempts": 0},
    )  # fmt: skip
    db.table("pushes").create_index(["key_id", "idempotency_key"], unique=True)
    db.table("pushes").create_index(["subject_id", "planned_at"])
    db.table("pushes").create_index(["campaign_id", "variant"])
    db.table("pushes").create_index(["created_at"])
    db.table("outbox").create(
        {"push_id": str, "due_at": str, "lease_owner": str, "lease_until": str},
        pk="push_id",
        not_null={"due_at"},
    )
    db.table("outbox").create_index(["due_at"])
    db.table("mutes").create(
        {"subject_id": str, "topic": str, "until": str, "source": str},
        pk=("subject_id", "topic"),
        not_null={"until", "source"},
    )


def _deliveries(db: sqlite_utils.Database) -> None:
    db.table("deliveries").create(
        {
            "push_id": str, "device_id": str, "adapter": str, "status": str, "attempts": int,
            "last_code": str, "updated_at": str,
        },
        pk=("push_id", "device_id"),
        not_null={"adapter", "status", "attempts", "updated_at"},
    )  # fmt: skip
    db.table("outbox").add_column("attempts", int, not_null_default=0)


def _complaints(db: sqlite_utils.Database) -> None:
    db.table("complaints").create(
        {
            "complaint_id": str, "subject_id": str, "push_id": str, "topic": str, "campaign_id": str,
            "variant": str, "reason": str, "comment": bytes, "status": str, "flagged": int, "actions": str,
            "created_at": str, "acknowledged_at": str, "resolved_at": str, "resolution": bytes,
        },
        pk="complaint_id",
        not_null={"subject_id", "reason", "status", "flagged", "actions", "created_at"},
    )  # fmt: skip
    db.table("complaints").create_index(["subject_id"])
    db.table("complaints").create_index(["campaign_id"])
    db.table("complaints").create_index(["created_at"])
    db.table("push_events").create(
        {"push_id": str, "type": str, "at": str}, pk=("push_id", "type"), not_null={"at"}
    )


def _audit(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE access_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            key_id TEXT NOT NULL,
            route TEXT NOT NULL,
            filters TEXT NOT NULL,
            result_count INTEGER NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE checkpoints (
            tree_size INTEGER PRIMARY KEY,
            root_hash BLOB NOT NULL,
            at TEXT NOT NULL,
            jws TEXT NOT NULL
        )"""
    )
    for table in ("access_log", "checkpoints"):
        for verb in ("UPDATE", "DELETE"):
            db.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def _final_reasons(db: sqlite_utils.Database) -> None:
    # Dispatch-time reasons get their own column: `reasons` stays the submission's answer,
    # which idempotent replays must return unchanged.
    db.table("pushes").add_column("final_reasons", str)


def _planned_index(db: sqlite_utils.Database) -> None:
    # The caps read a subject's planned marketing pushes on every decision: cover that query.
    db.execute(
        "CREATE INDEX pushes_planned_marketing ON pushes (subject_id, planned_at, topic, push_id, status) "
        "WHERE topic != 'transactional' AND status IN ('queued', 'deferred', 'sending', 'delivered')"
    )


def _planned_without_status(db: sqlite_utils.Database) -> None:
    # The caps' index named `status` in its WHERE clause, so each status change of a marketing
    # push (sending, delivered) deleted and re-inserted its entry, on a page chosen by the random
    # subject id. Without it the caps' query reads status from the row, for the few marketing
    # pushes a subject has in the window; transactional pushes stay out of the index.
    db.execute("DROP INDEX pushes_planned_marketing")
    db.execute(
        "CREATE INDEX pushes_planned_marketing ON pushes (subject_id, planned_at, topic) "
        "WHERE topic != 'transactional'"
    )


def _partial_campaign_index(db: sqlite_utils.Database) -> None:
    # A commit encrypts, MACs and writes every page it dirtied, and each b-tree a push enters
    # costs at least one page per commit (the newest rows of a group land on its last page):
    # most of a push's cost when groups are small. Transactional pushes (no campaign) filled
    # this index with NULLs no query reads; every query names a campaign, which a partial
    # index serves. (The outbox keeps its rowid b-tree: it is what orders pushes due at the
    # same time by arrival.)
    db.execute("DROP INDEX idx_pushes_campaign_id_variant")
    db.execute(
        "CREATE INDEX idx_pushes_campaign_id_variant ON pushes (campaign_id, variant) "
        "WHERE campaign_id IS NOT NULL"
    )


def _campaign_resume(db: sqlite_utils.Database) -> None:
    # Which rule paused a campaign (NULL: paused by hand), since only an operator may lift the
    # complaint rule's pause; and when it was last resumed, since the rule then judges only the
    # complaints and deliveries after that. Campaigns the rule paused before this step are
    # known by the evidence it wrote as their pause reason.
    db.table("campaigns").add_column("pause_rule", str)
    db.table("campaigns").add_column("resumed_at", str)
    evidence = '{"rule":"complaint_rate",'
    db.execute(
        "UPDATE campaigns SET pause_rule = 'complaint_rate' "
        "WHERE status = 'paused' AND substr(pause_reason, 1, ?) = ?",
        (len(evidence), evidence),
    )


def _campaign_delivered(db: sqlite_utils.Database) -> None:
    # The complaint rule judges a campaign at each of its deliveries. Counting its delivered
    # pushes there read every push row of the campaign (the campaign index does not hold
    # status): O(campaign) per delivery. The count is kept on the campaign row instead;
    # existing campaigns start from their delivered pushes since the last resume, exactly what
    # the count read (a delivered push's `updated_at` is when it was delivered).
    db.table("campaigns").add_column("delivered_since_resume", int, not_null_default=0)
    db.execute(
        "UPDATE campaigns SET delivered_since_resume = ("
        "SELECT count(*) FROM pushes p WHERE p.campaign_id = campaigns.campaign_id "
        "AND p.status = 'delivered' "
        "AND (campaigns.resumed_at IS NULL OR p.updated_at > campaigns.resumed_at))"
    )


def _final_policy_version(db: sqlite_utils.Database) -> None:
    # The version of the policy dispatch judged by when it wrote `final_reasons`: `policy_version`
    # is the submission's, and a policy change in between made the two differ with nothing to
    # tell them apart. NULL until dispatch ends a push with its own reasons; existing rows stay
    # NULL, since the version their final reasons were given under was never recorded.
    db.table("pushes").add_column("final_policy_version", int)


def _device_token_tags(db: sqlite_utils.Database) -> None:
    # One device token registered by two users (an app's logout and another login on the same
    # install, unregistering nothing) stayed active for both, and the first user's pushes, their
    # payments too, went to the phone the second now holds. The `fingerprint` is under each
    # subject's own key and cannot find another subject's row; this keyed hash, under a key of
    # the gateway's, can. NULL for rows stored before: each gets its tag when its app registers
    # the token again (apps register at every start).
    db.table("devices").add_column("token_tag", bytes)
    db.execute("CREATE INDEX devices_token_tag ON devices (token_tag) WHERE token_tag IS NOT NULL")


def _device_registered_at(db: sqlite_utils.Database) -> None:
    # When the app last registered the token: of a device two users registered before tags were
    # kept, the one who registered it last holds the phone. `created_at` is the first
    # registration and says nothing of that. NULL for rows last registered before.
    db.table("devices").add_column("registered_at", str)


def _campaign_paused_through(db: sqlite_utils.Database) -> None:
    # The last push stored (its rowid) when the campaign was last paused, kept through resumes:
    # a push of the campaign decided before the pause never goes out, though dispatch reaches it
    # after the resume (one deferred to the morning). A rowid, not a time: exact whatever the
    # clock does, and pushes are stored in the order they are decided.
    db.table("campaigns").add_column("paused_through", int)
    # A campaign paused now was paused after every push stored so far.
    db.execute(
        "UPDATE campaigns SET paused_through = (SELECT coalesce(max(rowid), 0) FROM pushes) "
        "WHERE status = 'paused'"
    )


def _admin_log(db: sqlite_utils.Database) -> None:
    # Who created or revoked an API key, rotated the key-encryption key, changed the policy or
    # paused and resumed a campaign (`storage.repositories.admin_log`); append-only, like the
    # audit access log.
    db.execute(
        """CREATE TABLE admin_log (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL
        )"""
    )
    for verb in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER admin_log_no_{verb.lower()} BEFORE {verb} ON admin_log "
            "BEGIN SELECT RAISE(ABORT, 'admin_log is append-only'); END"
        )


def _why_without_settings(db: sqlite_utils.Database) -> None:
    # `allowed_by` named the subject's quiet hours and time zone and their weekly and daily caps,
    # in clear, where the preference document holding them is sealed. New pushes seal it with
    # their content (`PushContent.why`); the rows before keep what let them through without
    # the settings.
    db.execute(
        """UPDATE pushes SET allowed_by = (
            SELECT json_group_array(CASE
                WHEN value LIKE 'quiet hours:%' THEN 'quiet hours: outside'
                WHEN value LIKE 'frequency:%this week' THEN 'frequency: under the weekly cap'
                WHEN value LIKE 'frequency:%today' THEN 'frequency: under the daily cap'
                ELSE value END)
            FROM json_each(pushes.allowed_by))
        WHERE json_valid(allowed_by) AND json_type(allowed_by) = 'array'
            AND (allowed_by LIKE '%quiet hours:%' OR allowed_by LIKE '%frequency:%')"""
    )


def _paused_through_before_resume(db: sqlite_utils.Database) -> None:
    # 0016 marked the campaigns paused at the upgrade; one paused and resumed before it kept no
    # mark, and its pushes decided before the pause (one deferred to the morning) went out. Until
    # a pause by hand stopped setting it, every resume set `resumed_at`: every push stored by
    # then was decided before the pause or refused during it. (A campaign paused and resumed by
    # hand under the versions between records nothing to go by, and stays unmarked.)
    db.execute(
        "UPDATE campaigns SET paused_through = "
        "(SELECT coalesce(max(p.rowid), 0) FROM pushes p WHERE p.created_at <= campaigns.resumed_at) "
        "WHERE paused_through IS NULL AND resumed_at IS NOT NULL"
    )


def _forget_settings_of_the_erased(db: sqlite_utils.Database) -> None:
    # Erasure blanks in a subject's pushes what tells of their settings and what could confirm a
    # guess of their content (`gateway.services.rights`); subjects erased before it did keep
    # them. The same, as that code did it when this was written, for every subject the ledger
    # says was erased (a returning user is a new subject id, untouched here).
    erased = "SELECT subject_id FROM ledger WHERE kind = 'subject.erased'"
    without = (
        "CASE WHEN {c} IS NULL OR NOT json_valid({c}) THEN {c} ELSE (SELECT json_group_array("
        "json_remove(r.value, '$.until', '$.limit')) FROM json_each({c}) r) END"
    )
    db.execute(
        "UPDATE pushes SET fingerprint = X'', allowed_by = '[]', deliver_after = NULL, "  # noqa: S608
        "planned_at = CASE WHEN planned_at IS NULL THEN NULL ELSE created_at END, "
        f"reasons = {without.format(c='reasons')}, final_reasons = {without.format(c='final_reasons')} "
        f"WHERE subject_id IN ({erased})"
    )
    db.execute(
        "UPDATE outbox SET due_at = (SELECT p.created_at FROM pushes p WHERE p.push_id = outbox.push_id) "  # noqa: S608
        f"WHERE push_id IN (SELECT push_id FROM pushes WHERE subject_id IN ({erased}))"
    )


def _ascii_quiet_times(db: sqlite_utils.Database) -> None:
    # A policy's quiet times ("HH:MM") took any script's digits ("1٣:00") until they were held to
    # ASCII ones; a version saved with others would no longer decode. The same times in ASCII.
    # (A user's own window is sealed under their key: read as the time it meant, and shown in
    # ASCII, by `policies.settings.ascii_hhmm`.)
    rows = db.execute("SELECT version, settings FROM policy_versions").fetchall()
    for version, settings in rows:
        doc = json.loads(settings)
        times = {f: doc.get(f) for f in ("quiet_start", "quiet_end")}
        if all(not isinstance(v, str) or v.isascii() for v in times.values()):
            continue
        for field, value in times.items():
            if isinstance(value, str):
                doc[field] = "".join(str(int(c)) if c.isdecimal() else c for c in value)
        db.execute(
            "UPDATE policy_versions SET settings = ? WHERE version = ?",
            (json.dumps(doc, separators=(",", ":"), ensure_ascii=False), version),
        )


def _active_devices_not_disabled(db: sqlite_utils.Database) -> None:
    # A device registered again after it was disabled became active with `disabled_at` set to
    # the moment it came back, which the export showed as when it stopped getting pushes.
    db.execute("UPDATE devices SET disabled_at = NULL WHERE status = 'active' AND disabled_at IS NOT NULL")


def _one_subject_index(db: sqlite_utils.Database) -> None:
    # A marketing push entered two indexes keyed by its random subject id: the subject index
    # (a subject's pushes, erasure, export) and the caps' (its marketing pushes in a window).
    # Each entry costs a page per commit once a batch's subjects are spread over more leaves
    # than it has pushes, and at dispatch, where `planned_at` changes, both moved. One index
    # serves both: ordered by subject, then by whether the push is transactional, the caps'
    # query seeks a subject's marketing pushes in the window without reading its transactional
    # ones (however many), and every by-subject query reads the subject's range.
    db.execute("DROP INDEX pushes_planned_marketing")
    db.execute("DROP INDEX idx_pushes_subject_id_planned_at")
    db.execute("CREATE INDEX pushes_subject ON pushes (subject_id, topic = 'transactional', planned_at)")


def _sent_at(db: sqlite_utils.Database) -> None:
    # When a transactional push sent late was sent: its time in the user's notifications. Moving
    # its `planned_at` instead, as a marketing push's moves (the caps count it when sent), moved
    # its entry in the subject index, keyed by its random subject: a page dirtied per push, a
    # tenth of the worker's CPU draining a backlog. No caps count a transactional push, and
    # this column is in no index. NULL for a push sent on time, and for every existing row.
    db.table("pushes").add_column("sent_at", str)


def _content_key(db: sqlite_utils.Database) -> None:
    # What an accepted push's content passed rule 2 under (`policies.minimization.content_key`):
    # dispatch scans it again only under another rule or settings. NULL for every existing row
    # and for rejected pushes, which dispatch never judges: scanned again.
    db.table("pushes").add_column("content_key", bytes)


def _opted_out(db: sqlite_utils.Database) -> None:
    # A campaign's opt-outs were counted from the subjects' consents as they are now: an erasure
    # (which deletes them) or a later grant took back an opt-out already counted, and an A/B
    # comparison changed after the fact. A push now keeps it, marked as `mark_opted_out` marks it
    # at each withdrawal: a campaign push a device has (delivered, or still sending to another)
    # whose subject withdrew marketing consent after its first delivery. The withdrawals are read
    # from the ledger, which keeps them, erased subjects' included.
    db.execute("ALTER TABLE pushes ADD COLUMN opted_out INTEGER NOT NULL DEFAULT 0")
    received = (
        "coalesce((SELECT min(d.updated_at) FROM deliveries d WHERE d.push_id = pushes.push_id "
        "AND d.status = 'delivered'), CASE WHEN pushes.status = 'delivered' THEN pushes.updated_at END)"
    )
    db.execute(
        "UPDATE pushes SET opted_out = 1 "  # noqa: S608
        "WHERE campaign_id IS NOT NULL AND status IN ('delivered', 'sending') "
        "AND EXISTS (SELECT 1 FROM ledger l WHERE l.subject_id = pushes.subject_id "
        f"AND l.kind = 'consent.withdrawn' AND l.purpose = 'marketing' AND l.at > {received})"
    )


def _shorter_idempotency_refs(db: sqlite_utils.Database) -> None:
    # Idempotency refs are now the first 128 bits of the key's HMAC (`pushes.idempotency_ref`):
    # those already stored are cut to the same prefix, so a replay after the upgrade still finds
    # its push rather than making a second. Only hex digests: a database from before refs were
    # hashed may hold a service's own 64-character keys, which cut could collide in the unique
    # index and stop every start.
    db.execute(
        "UPDATE pushes SET idempotency_key = substr(idempotency_key, 1, 32) "
        "WHERE length(idempotency_key) = 64 AND idempotency_key NOT GLOB '*[^0-9a-f]*'"
    )


DATA_MIGRATIONS: list[Migration] = [
    ("0001_core", _core),
    ("0002_policy", _policy),
    ("0003_pushes", _pushes),
    ("0004_deliveries", _deliveries),
    ("0005_complaints", _complaints),
    ("0006_audit", _audit),
    ("0007_final_reasons", _final_reasons),
    ("0008_planned_index", _planned_index),
    ("0009_planned_without_status", _planned_without_status),
    ("0010_partial_campaign_index", _partial_campaign_index),
    ("0011_campaign_resume", _campaign_resume),
    ("0012_campaign_delivered", _campaign_delivered),
    ("0013_final_policy_version", _final_policy_version),
    ("0014_device_token_tags", _device_token_tags),
    ("0015_device_registered_at", _device_registered_at),
    ("0016_campaign_paused_through", _campaign_paused_through),
    ("0017_admin_log", _admin_log),
    ("0018_why_without_settings", _why_without_settings),
    ("0019_paused_through_before_resume", _paused_through_before_resume),
    ("0020_forget_settings_of_the_erased", _forget_settings_of_the_erased),
    ("0021_ascii_quiet_times", _ascii_quiet_times),
    ("0022_active_devices_not_disabled", _active_devices_not_disabled),
    ("0023_opted_out", _opted_out),
    ("0024_one_subject_index", _one_subject_index),
    ("0025_shorter_idempotency_refs", _shorter_idempotency_refs),
    ("0026_sent_at", _sent_at),
    ("0027_content_key", _content_key),
]
DIRECTORY_MIGRATIONS: list[Migration] = [
    ("0001_directory", _directory),
    ("0002_pending_erasures", _pending_erasures),
    ("0003_wrapping_keys", _wrapping_keys),
    ("0004_erasure_days", _erasure_days),
    ("0005_key_checks", _key_checks),
    ("0006_erasures_made", _erasures_made),
]
