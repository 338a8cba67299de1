"""A user token's `exp` and `nbf` are read on the gateway's clock, the one `mint` stamps them by.

PyJWT checked them against the wall clock: a token the gateway minted on its FakeClock
(2026-11-23) was refused as long expired, and one not valid before an hour from the gateway's
now was taken at once. Here only the FakeClock moves; nothing sleeps.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
from conftest import FakeClock
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.auth import LEEWAY_SECONDS
from gateway.runtime import Runtime

ME = "/v1/me/preferences"


def _get(client: TestClient[Litestar], token: str) -> Any:
    return client.get(ME, headers={"Authorization": f"Bearer {token}"})


def _refusal(response: Any) -> tuple[dict[str, Any], str]:
    """The one 401 every bad user token gets: its body, and its WWW-Authenticate."""
    body = assert_problem(response, 401, "Authorization")
    return body, response.headers.get("www-authenticate", "")


def _hs256(runtime: Runtime, **claims: Any) -> str:
    claims = {"sub": "clock-user", "aud": runtime.user_tokens.audience, **claims}
    return jwt.encode(claims, runtime.keys.jwt_dev_secret, algorithm="HS256")


def test_a_minted_token_lives_until_its_exp_on_the_gateway_clock(
    client: TestClient[Litestar], runtime: Runtime, clock: FakeClock
) -> None:
    token = runtime.user_tokens.mint("clock-user", clock(), ttl=timedelta(hours=1))
    assert _get(client, token).status_code == 200
    clock.advance(hours=1, seconds=LEEWAY_SECONDS - 1)  # past exp, within the leeway
    assert _get(client, token).status_code == 200
    clock.advance(seconds=1)  # exp + leeway: expired
    expired = _refusal(_get(client, token))
    # The answer a token with no `exp` at all gets: the same status, body and header as ever.
    assert expired == _refusal(_get(client, _hs256(runtime, iat=int(clock().timestamp()))))
    assert expired[0]["detail"] == "invalid or expired user token"


def test_a_token_not_yet_valid_on_the_gateway_clock_is_refused_until_it_is(
    client: TestClient[Litestar], runtime: Runtime, clock: FakeClock
) -> None:
    now = int(clock().timestamp())
    token = _hs256(runtime, iat=now, nbf=now + 3600, exp=now + 7200)
    early = _refusal(_get(client, token))
    assert early == _refusal(_get(client, _hs256(runtime, iat=now)))
    clock.advance(seconds=3600 - LEEWAY_SECONDS - 1)
    assert _get(client, token).status_code == 401
    clock.advance(seconds=1)  # nbf within the leeway
    assert _get(client, token).status_code == 200


def test_an_exp_that_is_no_number_is_refused_as_before(
    client: TestClient[Litestar], runtime: Runtime, clock: FakeClock
) -> None:
    now = int(clock().timestamp())
    for exp in ("tomorrow", None, [now + 60], 1e400):
        refused = _refusal(_get(client, _hs256(runtime, iat=now, exp=exp)))
        assert refused[0]["detail"] == "invalid or expired user token", exp
