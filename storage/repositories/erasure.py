"""SQL of an erasure's data-file half (`gateway.services.rights`): the subject's rows deleted,
and what their pushes tell of them forgotten, a slice of their pushes at a time (by rowid).

Each may run again after a crash (the cleanup is retried), and then finds nothing left to change.
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.connections import Connection, in_chunks

__all__ = ["SUBJECT_TABLES", "delete_subject_rows", "forget_pushes", "subject_pushes"]

SUBJECT_TABLES = ("preferences", "consents", "devices", "locations", "mutes")
# A push's reasons (a JSON list of objects) without the details drawn from the user's settings.
_WITHOUT_SETTINGS = (
    "CASE WHEN {column} IS NULL THEN NULL ELSE (SELECT json_group_array(json_remove(r.value, '$.until', "
    "'$.limit')) FROM json_each({column}) r) END"
)
_FORGET_SETTINGS_IN_PUSHES = (
    "UPDATE pushes SET fingerprint = X'', allowed_by = '[]', deliver_after = NULL, "  # noqa: S608 (our SQL)
    "planned_at = CASE WHEN planned_at IS NULL THEN NULL ELSE created_at END, "
    f"reasons = {_WITHOUT_SETTINGS.format(column='reasons')}, "
    f"final_reasons = {_WITHOUT_SETTINGS.format(column='final_reasons')} "
    "WHERE rowid IN ({marks})"
)


def delete_subject_rows(conn: Connection, subject_id: str) -> None:
    """The subject's rows in every table keyed by subject (`SUBJECT_TABLES`), one table after another."""
    for table in SUBJECT_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE subject_id = ?", (subject_id,))  # noqa: S608


def subject_pushes(conn: Connection, subject_id: str) -> list[int]:
    """The rowids of the subject's pushes, in order."""
    return [
        rowid
        for (rowid,) in conn.execute(
            "SELECT rowid FROM pushes WHERE subject_id = ? ORDER BY rowid", (subject_id,)
        )
    ]


def forget_pushes(conn: Connection, rowids: Sequence[int]) -> None:
    """What these pushes tell of their subject, forgotten, in this order (each step's why is below)."""
    for marks, chunk in in_chunks(rowids):
        _forget_settings_in_pushes(conn, marks, chunk)
        _forget_when_pushes_reached_them(conn, marks, chunk)
        _make_deferred_pushes_due(conn, marks, chunk)


def _forget_settings_in_pushes(conn: Connection, marks: str, rowids: list[int]) -> None:
    """The subject's pushes stay (caps, statistics, audits), but not what could confirm a guess of
    their content: the request's fingerprint is keyed with the pseudonymization key, which
    outlives erasure. Nor what tells of the user's settings: the facts that let each through
    (their time zone, quiet window and cap), a reason's `until` (their quiet window's end, in
    UTC, gives away their time zone) and `limit` (their cap), and a deferral's time (the push's
    planned time becomes its creation's). Reason codes stay. The idempotency key's hash stays,
    so that a replay still gets an answer (these details gone from it) and never makes a second
    push, even after the user came back."""
    conn.execute(_FORGET_SETTINGS_IN_PUSHES.format(marks=marks), rowids)


_THESE_PUSHES = "push_id IN (SELECT push_id FROM pushes WHERE rowid IN ({marks}))"
_CREATED = "(SELECT p.created_at FROM pushes p WHERE p.push_id = {table}.push_id)"


def _forget_when_pushes_reached_them(conn: Connection, marks: str, rowids: list[int]) -> None:
    """A push deferred to the user's morning was sent, delivered and opened then: its row's last
    change, its deliveries' and its events' times would tell when their quiet window ends, and
    so their time zone (one sent at a quarter past the hour, a zone of +05:45), as the
    deferral's time did. Each becomes the push's creation's, for every push of theirs, since
    one deferred at dispatch keeps no trace of it once sent. So a complaint of theirs about a
    push created before its campaign's last resume, and delivered after, no longer counts
    towards the campaign's complaint rate since then (`complaints.count_for_campaign`)."""
    conn.execute(
        f"UPDATE pushes SET updated_at = created_at, sent_at = NULL WHERE rowid IN ({marks})",  # noqa: S608
        rowids,
    )
    for table, column in (("deliveries", "updated_at"), ("push_events", "at")):
        conn.execute(
            f"UPDATE {table} SET {column} = {_CREATED.format(table=table)} "  # noqa: S608
            f"WHERE {_THESE_PUSHES.format(marks=marks)}",
            rowids,
        )


def _make_deferred_pushes_due(conn: Connection, marks: str, rowids: list[int]) -> None:
    """A push deferred to the user's morning waits in the outbox until then: due now instead, it
    ends `subject_erased` at the next round, and its row no longer tells when their morning is."""
    conn.execute(
        f"UPDATE outbox SET due_at = {_CREATED.format(table='outbox')} "  # noqa: S608
        f"WHERE {_THESE_PUSHES.format(marks=marks)}",
        rowids,
    )
