"""Browser tests: Playwright driving Debian's Chromium against a real `consent-gateway serve`.

This folder is a package (`browser`), so this conftest is `browser.conftest` and does not shadow
tests/conftest.py, which other tests import as `conftest`.

`.ci/run` installs the `chromium` package. Elsewhere, without it, these tests skip and say why;
with TESTS_REQUIRE_BROWSER=1 (set by `.ci/run`) a missing browser fails them instead, so CI can
never pass by not running them.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright
from support import Server, daytime_zone, serve_process

from gateway.auth import UserTokens
from gateway.clock import system_clock
from gateway.runtime import load_keys, user_tokens
from gateway.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
# As the machine notes say: no sandbox as root, and no background networking on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module, not per session: Playwright's sync API runs an event loop in this thread while
    it is started, and the tests after these call `asyncio.run`, which refuses to nest in one."""
    if not CHROMIUM.exists():
        if os.environ.get("TESTS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing and TESTS_REQUIRE_BROWSER=1")
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium; .ci/run installs it)")
    # The tests before these leave millions of objects in the oldest generation (each app they
    # built is cyclic garbage). Collected in one go in the middle of a test, they held this thread
    # for 10 s, during which Playwright calls no route handler and the page's requests wait: a
    # test waiting 5 s for an answer failed. So they are collected here, and what is left is
    # frozen, out of the collector's way, until the module ends.
    gc.collect()
    gc.freeze()
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield launched
            launched.close()
    finally:
        gc.unfreeze()


@dataclass
class Gateway:
    """A running server and what a test needs to act beside the page: the CLI and an HTTP client."""

    server: Server
    http: httpx.Client
    tokens: UserTokens
    keys: dict[tuple[str, ...], str] = field(default_factory=dict)

    def token(self, user_id: str) -> str:
        """Minted here under the server's dev secret, as `consent-gateway token` mints it (that
        command's own tests are in tests/e2e): a CLI process per page cost a second each."""
        return self.tokens.mint(user_id, system_clock())

    def key(self, *scopes: str) -> str:
        """One key per set of scopes for the module (`new_key` for a test that needs its own)."""
        if scopes not in self.keys:
            self.keys[scopes] = self.new_key(*scopes)
        return self.keys[scopes]

    def new_key(self, *scopes: str) -> str:
        """Made by the CLI beside the running server."""
        created = self.server.cli("keys", "create", "--name", "browser test", "--scope", *scopes)
        assert created.returncode == 0, created.stderr
        return created.stdout.strip()

    def as_user(self, user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id)}"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("browser")
    # The audit page's paging needs a subject with over a page (100) of consent events, more
    # changes than one user is let make at once (`CGW_USER_WRITES_PER_HOUR`, tested in tests/api).
    settings = {"CGW_LOG_LEVEL": "info", "CGW_TIMEZONE": daytime_zone(), "CGW_USER_WRITES_PER_HOUR": "0"}
    with serve_process(root / "data", root / "server.stderr", settings) as server:
        settings_read = Settings.from_env(server.env)
        tokens = user_tokens(settings_read, load_keys(settings_read))
        with httpx.Client(base_url=server.base, timeout=10.0) as http:
            yield Gateway(server, http, tokens)
        server.stop()


@dataclass
class Tab:
    """A page with every console error and uncaught exception it produced (a CSP violation is a
    console error), which each test checks is empty at the end."""

    page: Page
    errors: list[str]


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield Tab(page, errors)
    context.close()
