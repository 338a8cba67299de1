"""Shared fixtures: a real app on a real SQLCipher data dir in tmp, a settable clock, and
credentials for each role. User tokens are minted on the gateway's clock, the settable one,
which is also the clock it checks them against (`UserTokens.verify`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from support import WebhookRelay

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings

FIXED_NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
TEST_TOKEN_TTL = timedelta(days=400)  # `as_user`: past any move of the clock a test makes

Headers = dict[str, str]


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(FIXED_NOW)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, worker_enabled=False)


@pytest.fixture
def app(settings: Settings, clock: FakeClock) -> Litestar:
    """Built as `serve` builds it, the collector tuned (gateway/gc_tuning.py): untuned, the API
    tests ran ~20% slower (their full collections walking all the run has built). The garbage
    that freezing keeps from collection meanwhile is collected before the browser tests, the
    ones it paused (tests/browser/conftest.py)."""
    return create_app(settings, clock, tune_collector=True)


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def runtime(client: TestClient[Litestar], app: Litestar) -> Runtime:
    live: Runtime = app.state.runtime
    return live


@pytest.fixture
def as_user(runtime: Runtime) -> Callable[[str], Headers]:
    def headers(user_id: str) -> Headers:
        # On the gateway's clock, which checks it, and for as long as a test may move that clock
        # on (the tests of expiry mint their own).
        token = runtime.user_tokens.mint(user_id, runtime.clock(), ttl=TEST_TOKEN_TTL)
        return {"Authorization": f"Bearer {token}"}

    return headers


@pytest.fixture
def as_key(runtime: Runtime) -> Callable[..., Headers]:
    def headers(*scopes: str) -> Headers:
        _, secret = runtime.api_keys.create_sync("test key", scopes)
        return {"Authorization": f"Bearer {secret}"}

    return headers


@pytest.fixture
def hook() -> Iterator[WebhookRelay]:
    """A local stand-in for the wallet's relay, for tests whose settings send webhooks to it."""
    server = WebhookRelay()
    yield server
    server.close()
