"""A signed export refused for its size writes nothing: not even the checkpoint it would carry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem, grow_ledger

import gateway.services.audit_ledger
from gateway.runtime import Runtime

Client = TestClient[Litestar]


def checkpoints(runtime: Runtime) -> int:
    return int(runtime.store.data.reader().execute("SELECT count(*) FROM checkpoints").fetchone()[0])


def test_an_export_over_the_maximum_is_refused_before_a_checkpoint_is_signed(
    client: Client,
    runtime: Runtime,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: the checkpoint was signed and stored first, then the range counted and refused."""
    monkeypatch.setattr(gateway.services.audit_ledger, "EXPORT_MAX", 3)
    auditor = as_key("audit:read")
    grow_ledger(client, as_user("export-refused-user"), 4)
    before = checkpoints(runtime)

    assert_problem(client.get("/v1/audit/export", headers=auditor), 400, "to")

    assert checkpoints(runtime) == before
    monkeypatch.setattr(gateway.services.audit_ledger, "EXPORT_MAX", 4)
    exported = client.get("/v1/audit/export", headers=auditor)
    assert exported.status_code == 200, exported.text
    assert checkpoints(runtime) == before + 1
