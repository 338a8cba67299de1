"""Both pages as people who use a keyboard, a screen reader or a narrow screen meet them, in a
real browser against a real server. Each case is one a review of accessibility found (WCAG 2.2
AA): a field marked wrong showed no focus ring, a long link scrolled the page sideways at 320 px,
the focus fell to the page's body after signing in or out, an empty sign-in did nothing, and the
audit page's time fields said their format nowhere a screen reader reads."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Route, expect

from browser.conftest import Gateway, Tab
from browser.test_preferences_page import grant_with_device, open_as, sent_push, user

pytestmark = pytest.mark.slow

INK = "rgb(29, 36, 51)"  # pages.css --ink
BAD = "rgb(179, 38, 30)"  # pages.css --bad


def focused_id(page: Page) -> str:
    return str(page.evaluate("document.activeElement.id || document.activeElement.tagName"))


def outline(page: Page, selector: str) -> tuple[str, str]:
    return tuple(
        page.eval_on_selector(
            selector, "e => [getComputedStyle(e).outlineColor, getComputedStyle(e).outlineOffset]"
        )
    )


def test_an_empty_sign_in_says_so_and_the_field_shows_its_focus(tab: Tab, gateway: Gateway) -> None:
    page = tab.page
    page.goto(f"{gateway.server.base}/preferences")
    page.press("#token", "Enter")
    expect(page.locator("#status [role=alert]")).to_contain_text("Paste your sign-in token")
    field = page.locator("#token")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_attribute("aria-describedby", "status-message")
    assert focused_id(page) == "token"
    assert outline(page, "#token") == (INK, "2px")  # its focus ring, not the red mark alone
    page.keyboard.press("Tab")
    assert outline(page, "#token")[0] == BAD  # still marked once the focus has left
    assert tab.errors == []


def test_signing_in_and_out_leaves_the_focus_where_the_person_is(tab: Tab, gateway: Gateway) -> None:
    page = tab.page
    page.goto(f"{gateway.server.base}/preferences")
    page.fill("#token", gateway.token(user()))
    page.press("#token", "Enter")
    expect(page.locator("#consents")).to_be_visible()
    assert focused_id(page) == "consents-title"  # the view's first heading, not the body
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#sign-in")).to_be_visible()
    assert focused_id(page) == "token"
    assert tab.errors == []


def test_a_session_ended_is_said_as_an_error(tab: Tab, gateway: Gateway) -> None:
    page = tab.page
    open_as(tab, gateway, user())
    page.route(
        "**/v1/me/preferences",
        lambda route: route.fulfill(status=401, json={"status_code": 401, "detail": "expired"}),
    )
    page.locator("input[name=consent-marketing]").click()
    expect(page.locator("#status p.error[role=alert]")).to_contain_text("Your session has ended")
    assert focused_id(page) == "token"
    assert [e for e in tab.errors if "status of 401" not in e] == []


def test_a_first_view_not_read_puts_the_focus_on_try_again(tab: Tab, gateway: Gateway) -> None:
    page = tab.page

    def down(route: Route) -> None:
        route.abort()  # the network gone: said as the service unreachable, not "Failed to fetch"

    page.route("**/v1/me/devices", down)
    page.goto(f"{gateway.server.base}/preferences#token={gateway.token(user())}")
    expect(page.locator("#retry")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("The service is busy or down")
    expect(page.locator("#status")).not_to_contain_text("Failed to fetch")
    assert focused_id(page) == "retry"
    page.unroute("**/v1/me/devices")
    page.keyboard.press("Enter")
    expect(page.locator("#consents")).to_be_visible()


def test_a_long_link_in_a_message_does_not_scroll_the_page_sideways(tab: Tab, gateway: Gateway) -> None:
    someone = user()
    grant_with_device(gateway, someone)
    link = (
        "https://shop.example.com/offers/winter?voucher=WINTER2026ABCDEFGHJKLMNPQRSTUVWXYZ&utm_source=wallet"
    )
    sent_push(gateway, someone, body=f"Use it here: {link}")
    tab.page.set_viewport_size({"width": 320, "height": 256})
    open_as(tab, gateway, someone)
    expect(tab.page.locator("#notifications")).to_contain_text("Use it here")
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= 320
    assert tab.errors == []


def test_the_audit_sign_in_and_its_time_filters_say_what_they_need(tab: Tab, gateway: Gateway) -> None:
    page = tab.page
    page.goto(f"{gateway.server.base}/audit/")
    page.get_by_role("button", name="Continue").click()
    expect(page.locator("#status [role=alert]")).to_contain_text("Paste an auditor's API key")
    expect(page.locator("#api-key")).to_have_attribute("aria-invalid", "true")
    assert focused_id(page) == "api-key"

    page.fill("#api-key", gateway.key("audit:read"))
    page.press("#api-key", "Enter")
    expect(page.locator("#verify")).to_be_visible()
    assert focused_id(page) == "tab-ledger"
    page.get_by_role("button", name="Decisions", exact=True).click()
    frm = page.locator("#filter-from")
    expect(frm).to_have_attribute("aria-describedby", "times-hint")
    expect(page.locator("#times-hint")).to_contain_text("RFC 3339")
    frm.fill("2026-11-01")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#status [role=alert]")).to_contain_text("from")
    expect(frm).to_have_attribute("aria-invalid", "true")
    expect(frm).to_have_attribute("aria-describedby", "times-hint status-message")
    assert focused_id(page) == "filter-from"
    frm.fill("2026-11-01T00:00:00Z")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#status [role=status]")).to_be_visible()
    expect(frm).not_to_have_attribute("aria-invalid", "true")
    expect(frm).to_have_attribute("aria-describedby", "times-hint")

    page.get_by_role("button", name="Subject").click()
    expect(page.locator("#subject-at")).to_have_attribute("aria-describedby", "subject-at-hint")
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#status")).to_contain_text("Signed out.")
    assert focused_id(page) == "api-key"
    assert [e for e in tab.errors if "status of 400" not in e] == []
