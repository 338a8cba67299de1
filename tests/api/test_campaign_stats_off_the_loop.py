"""A campaign's statistics read every push of it: over a second at 300,000 pushes, during which
every other request on the event loop, `/healthz` included, waited. The counting now runs in a
worker thread. As in test_audit_verify_off_the_loop, no timing decides it: the count is stopped
mid-route until the test lets it go, and `/healthz` must be answered meanwhile."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from test_audit_verify_off_the_loop import Gate, healthz_while_held
from test_engagement_stats import create_campaign

from gateway.services import stats

Client = TestClient[Litestar]


def test_a_request_made_while_a_campaign_is_counted_is_not_held_up(
    client: Client, as_key: Callable[..., Headers], monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = create_campaign(client, as_key("campaigns:write"))
    gate = Gate(stats._count)
    monkeypatch.setattr(stats, "_count", gate)
    reader = as_key("campaigns:read")
    answers, held_up = healthz_while_held(
        client, gate, lambda: client.get(f"/v1/campaigns/{cid}/stats", headers=reader).status_code, "stats"
    )
    assert answers == [200]
    assert not held_up, "/healthz waited for a campaign's counts: they ran on the event loop"
