"""`/schema`, Swagger UI, in a real browser against a real server: it renders the operations and
can call the API, asks nothing of any other host, and trips no Content-Security-Policy rule.

Before, its scripts, style and favicon came from a CDN: this browser, on a closed network,
asked the CDN for them and rendered nothing."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Request, expect

from browser.conftest import Gateway, Tab

pytestmark = pytest.mark.slow

LOCAL = "127.0.0.1"
# Init scripts are added through DevTools, so the page's own policy does not stop this one.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@pytest.fixture
def requests(tab: Tab) -> list[str]:
    """Every URL the tab asks for, from its first request on; and its policy's violations, in
    `window.__violations`."""
    seen: list[str] = []

    def on_request(request: Request) -> None:
        seen.append(request.url)

    tab.page.on("request", on_request)
    tab.page.add_init_script(RECORD_VIOLATIONS)
    return seen


def elsewhere(requests: list[str]) -> list[str]:
    """Requests that left 127.0.0.1 (a `data:` URL is no request to anyone)."""
    return [url for url in requests if urlsplit(url).scheme != "data" and urlsplit(url).hostname != LOCAL]


def test_swagger_ui_renders_the_operations_from_this_origin_only(
    tab: Tab, gateway: Gateway, requests: list[str]
) -> None:
    tab.page.goto(f"{gateway.server.base}/schema")
    push = tab.page.locator(".opblock-post .opblock-summary-path[data-path='/v1/pushes']")
    expect(push).to_be_visible()
    expect(tab.page.locator(".opblock")).not_to_have_count(0)
    assert any(url.endswith("/schema/assets/swagger-ui-bundle.js") for url in requests)
    assert elsewhere(requests) == []
    assert tab.page.evaluate("window.__violations") == []
    assert tab.errors == []


def test_try_it_out_calls_the_api_on_this_origin(tab: Tab, gateway: Gateway, requests: list[str]) -> None:
    """`connect-src 'self'` lets Swagger UI call the API it documents, and nothing else."""
    tab.page.goto(f"{gateway.server.base}/schema")
    operation = tab.page.locator(".opblock-get:has(.opblock-summary-path[data-path='/healthz'])")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    expect(operation.locator(".live-responses-table tr.response .response-col_status")).to_have_text("200")
    expect(operation.locator(".live-responses-table .microlight").first).to_contain_text('"status": "ok"')
    assert f"{gateway.server.base}/healthz" in requests
    assert elsewhere(requests) == []
    assert tab.page.evaluate("window.__violations") == []
    assert tab.errors == []
