"""Verification holds the consent state pushes are decided on to the ledger.

The `consents` table is the latest state of the ledger's consent events, written in their
transaction, and what every push's consent rule reads. Whoever holds the database key ran
`UPDATE consents SET granted = 1` for a user whose ledger said withdrawn: marketing went through
to them, and `audit verify` answered ok, as the chain does not read that table. Now a row the
ledger's latest consent event does not back fails verification (`consents_unbacked`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from support import cli_audit_verify, grow_ledger, tamper, verdict

from gateway.runtime import Runtime

Client = TestClient[Litestar]


@pytest.fixture
def auditor(as_key: Callable[..., dict[str, str]]) -> dict[str, str]:
    return as_key("audit:read")


UNTOUCHED = {"ok": True, "first_invalid_seq": None, "checkpoint_problem": None, "consents_unbacked": 0}


def _withdrawn(client: Client, as_user: Any, auditor: dict[str, str]) -> None:
    """alice granted marketing, then withdrew it; bob granted it and keeps it."""
    grow_ledger(client, as_user("alice"), 2)
    grow_ledger(client, as_user("bob"), 1)
    assert {k: verdict(client, auditor)[k] for k in UNTOUCHED} == UNTOUCHED


@pytest.mark.parametrize(
    "statements",
    [
        ("UPDATE consents SET granted = 1 WHERE granted = 0",),  # withdrawn, granted again
        ("UPDATE consents SET notice_version = 'v2' WHERE granted = 1",),  # another notice
        ("INSERT INTO consents SELECT subject_id, 'personalization', 1, 'v1', updated_at FROM consents "
         "WHERE granted = 1",),  # a purpose never consented to
    ],
    ids=["granted again", "another notice", "never consented"],
)  # fmt: skip
def test_a_consent_changed_behind_the_ledgers_back_fails_verification(
    client: Client, runtime: Runtime, as_user: Any, auditor: dict[str, str], statements: tuple[str, ...]
) -> None:
    _withdrawn(client, as_user, auditor)
    tamper(runtime, *statements)
    got = verdict(client, auditor)
    assert {k: got[k] for k in UNTOUCHED} == UNTOUCHED | {"ok": False, "consents_unbacked": 1}


def test_a_dropped_consents_table_fails_verification(
    client: Client, runtime: Runtime, as_user: Any, auditor: dict[str, str]
) -> None:
    _withdrawn(client, as_user, auditor)
    tamper(runtime, "DROP TABLE consents")
    got = verdict(client, auditor)
    assert (got["ok"], got["consents_unbacked"]) == (False, None)


def test_an_erased_users_consents_leave_nothing_unbacked(
    client: Client, as_user: Any, auditor: dict[str, str]
) -> None:
    _withdrawn(client, as_user, auditor)
    assert client.delete("/v1/me", headers=as_user("bob")).status_code == 204
    got = verdict(client, auditor)
    assert {k: got[k] for k in UNTOUCHED} == UNTOUCHED


def test_cli_audit_verify_reports_it_with_exit_1(
    client: Client, runtime: Runtime, as_user: Any, auditor: dict[str, str], data_dir: Path
) -> None:
    _withdrawn(client, as_user, auditor)
    tamper(runtime, "UPDATE consents SET granted = 1")
    runtime.store.data.checkpoint()
    status, errors, report = cli_audit_verify(data_dir)
    assert (status, errors) == (1, ""), report
    assert (report["ok"], report["consents_unbacked"], report["first_invalid_seq"]) == (False, 1, None)
