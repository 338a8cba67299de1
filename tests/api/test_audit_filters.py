"""Audit filters that take a fixed set of values (complaint statuses and reasons, the spec's reason
codes) refuse any other value by name, as `outcome` and `purpose` do: a misspelled filter answered
200 with an empty page, which reads as "nothing of the kind happened"."""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.audit_access_log import NOT_LOGGED
from gateway.schemas.complaints import ComplaintReason, ComplaintStatus
from policies import ALL_REASON_CODES

Client = TestClient[Litestar]

MISSPELLED = [
    ("/complaints", "status", "resolvd"),
    ("/complaints", "status", "RESOLVED"),
    ("/complaints", "reason", "no-consent"),
    ("/complaints", "reason", "quiet_hours"),  # a decision's reason code, not a complaint's
    ("/decisions", "reason", "bogus"),
    ("/decisions", "reason", "no-consent"),
    ("/decisions", "reason", "too_frequent"),  # a complaint's reason, not a decision's
]


@pytest.fixture
def auditor(as_key: Callable[..., Headers]) -> Headers:
    return as_key("audit:read")


@pytest.mark.parametrize(("path", "name", "value"), MISSPELLED)
def test_a_value_outside_the_set_is_refused_by_name(
    client: Client, auditor: Headers, path: str, name: str, value: str
) -> None:
    response = client.get(f"/v1/audit{path}", headers=auditor, params={name: value})
    assert_problem(response, 400, name)


def test_every_allowed_value_is_taken(client: Client, auditor: Headers) -> None:
    allowed = [
        *(("/complaints", "status", v) for v in get_args(ComplaintStatus)),
        *(("/complaints", "reason", v) for v in get_args(ComplaintReason)),
        *(("/decisions", "reason", v) for v in sorted(ALL_REASON_CODES)),
    ]
    for path, name, value in allowed:
        response = client.get(f"/v1/audit{path}", headers=auditor, params={name: value})
        assert response.status_code == 200, (path, name, value, response.text)


def test_the_refusal_is_in_the_access_log(client: Client, auditor: Headers) -> None:
    client.get("/v1/audit/complaints", headers=auditor, params={"status": "resolvd"})
    entries = client.get("/v1/audit/access-log", headers=auditor).json()["entries"]
    assert [(e["route"], e["result_count"], e["filters"]) for e in entries[:1]] == [
        ("/v1/audit/complaints", 0, {"status": NOT_LOGGED})  # a code is kept only as one of its values
    ]
