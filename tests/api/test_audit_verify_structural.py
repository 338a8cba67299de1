"""Audit API: verification reports structural tampering instead of failing on it.

Whoever holds the database key can drop the ledger or checkpoints table, or store a checkpoint
column as another type than the one written. `GET /v1/audit/ledger/verify` answered 500 and
`consent-gateway audit verify` printed a traceback; both must give a verdict, `ok: false` with
the problem named (`ledger_missing`, `checkpoints_missing`, `bad_signature`), exit status 1."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import cli_audit_verify, grow_ledger, tamper, verdict

from gateway.runtime import Runtime

Client = TestClient[Litestar]
Json = dict[str, Any]


@pytest.fixture
def auditor(as_key: Callable[..., Headers]) -> Headers:
    return as_key("audit:read")


def _checkpointed(client: Client, as_user: Any, auditor: Headers, events: int = 3) -> None:
    grow_ledger(client, as_user("alice"), events)
    assert client.get("/v1/audit/ledger/checkpoint", headers=auditor).status_code == 200


def test_a_dropped_ledger_is_ledger_missing(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    _checkpointed(client, as_user, auditor)
    tamper(runtime, "DROP TABLE ledger")
    result = verdict(client, auditor)
    assert (result["ok"], result["events"], result["first_invalid_seq"]) == (False, 0, None)
    assert (result["checkpoint_tree_size"], result["checkpoint_problem"]) == (3, "ledger_missing")
    assert result["consents_unbacked"] is None  # nothing to hold the consent rows to: not checked


def test_a_dropped_ledger_without_a_checkpoint_is_not_a_clean_empty_ledger(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    grow_ledger(client, as_user("alice"), 2)
    tamper(runtime, "DROP TABLE ledger")
    result = verdict(client, auditor)
    assert (result["ok"], result["checkpoint_tree_size"], result["checkpoint_problem"]) == (
        False,
        None,
        "ledger_missing",
    )


def test_a_ledger_rebuilt_without_a_column_is_ledger_missing(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    grow_ledger(client, as_user("alice"), 2)
    tamper(runtime, "ALTER TABLE ledger DROP COLUMN body")
    assert verdict(client, auditor)["checkpoint_problem"] == "ledger_missing"


def test_a_dropped_checkpoints_table_is_checkpoints_missing(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    _checkpointed(client, as_user, auditor)
    tamper(runtime, "DROP TABLE checkpoints")
    result = verdict(client, auditor)
    assert (result["ok"], result["events"], result["first_invalid_seq"]) == (False, 3, None)
    assert (result["checkpoint_tree_size"], result["checkpoint_problem"]) == (None, "checkpoints_missing")


def test_both_tables_dropped_names_the_ledger(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    _checkpointed(client, as_user, auditor)
    tamper(runtime, "DROP TABLE checkpoints", "DROP TABLE ledger")
    result = verdict(client, auditor)
    assert (result["ok"], result["checkpoint_problem"]) == (False, "ledger_missing")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("root_hash", "'abc'"),  # text where the root's blob was: `bytes(str)` raised TypeError
        ("root_hash", "x'00'"),  # a blob, but not a 32-byte hash
        ("root_hash", "12"),
        ("at", "12"),  # stored as the text '12' (the column's affinity): not the signed time
        ("jws", "x'ff00'"),  # a blob that is not UTF-8 text
    ],
)
def test_a_checkpoint_column_of_another_type_is_a_bad_signature(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers, column: str, value: str
) -> None:
    _checkpointed(client, as_user, auditor)
    tamper(runtime, "DROP TRIGGER checkpoints_no_update", f"UPDATE checkpoints SET {column} = {value}")  # noqa: S608
    result = verdict(client, auditor)
    assert (result["ok"], result["first_invalid_seq"]) == (False, None)
    assert (result["checkpoint_tree_size"], result["checkpoint_problem"]) == (3, "bad_signature")


def test_a_checkpoint_whose_at_is_stored_as_a_blob_of_the_same_text_is_unsound(
    client: Client, runtime: Runtime, as_user: Any, auditor: Headers
) -> None:
    """Its root, JWS and the text of `at` all hold: only the stored type gives it away."""
    _checkpointed(client, as_user, auditor)
    tamper(runtime, "DROP TRIGGER checkpoints_no_update", "UPDATE checkpoints SET at = CAST(at AS BLOB)")
    assert verdict(client, auditor)["checkpoint_problem"] == "bad_signature"


def test_the_openapi_document_lists_the_new_problems(client: Client) -> None:
    document = client.get("/schema/openapi.json").json()
    problem = json.dumps(
        document["components"]["schemas"]["VerifyResult"]["properties"]["checkpoint_problem"]
    )
    for value in ("ledger_shorter", "root_differs", "bad_signature", "unknown_key"):
        assert value in problem
    assert "ledger_missing" in problem
    assert "checkpoints_missing" in problem


@pytest.mark.parametrize(
    ("statements", "problem"),
    [
        (("DROP TABLE ledger",), "ledger_missing"),
        (("DROP TABLE checkpoints",), "checkpoints_missing"),
        (("DROP TRIGGER checkpoints_no_update", "UPDATE checkpoints SET root_hash = 'abc'"), "bad_signature"),
    ],
)
def test_cli_audit_verify_reports_structural_tampering_with_exit_1(
    client: Client,
    runtime: Runtime,
    as_user: Any,
    auditor: Headers,
    data_dir: Path,
    statements: tuple[str, ...],
    problem: str,
) -> None:
    _checkpointed(client, as_user, auditor)
    tamper(runtime, *statements)
    runtime.store.data.checkpoint()
    status, errors, report = cli_audit_verify(data_dir)
    assert (status, errors) == (1, ""), report
    assert (report["ok"], report["checkpoint_problem"]) == (False, problem)
