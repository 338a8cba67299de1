"""The auditor dashboard (`/audit/`) in a real browser against a real server: an auditor's key
signs in, verifies the ledger, lists and filters events and decisions, looks a subject up at a
moment, and finds those calls in the access log. Everything shown is checked against the API."""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route, expect

from browser.conftest import Gateway, Tab

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def auditor(gateway: Gateway) -> dict[str, str]:
    return {"Authorization": f"Bearer {gateway.key('audit:read')}"}


def sign_in(tab: Tab, gateway: Gateway, headers: dict[str, str]) -> None:
    tab.page.goto(f"{gateway.server.base}/audit/")
    tab.page.fill("#api-key", headers["Authorization"].removeprefix("Bearer "))
    tab.page.get_by_role("button", name="Continue").click()


def consent(gateway: Gateway, user_id: str, purpose: str, granted: bool) -> str:
    answer = gateway.http.put(
        f"/v1/me/consents/{purpose}",
        json={"granted": granted, "notice_version": "audit-page-1"},
        headers=gateway.as_user(user_id),
    )
    assert answer.status_code == 200, answer.text
    ref: str = answer.json()["receipt"]["subject_ref"]
    return ref


def toggled(gateway: Gateway, times: int) -> None:
    """A new user gives and withdraws marketing consent `times` changes in all: more than a page
    of consent events (100) for `times` over 100."""
    someone = gateway.as_user(f"pager-{secrets.token_hex(3)}")
    for index in range(times):
        answer = gateway.http.put(
            "/v1/me/consents/marketing",
            json={"granted": index % 2 == 0, "notice_version": "audit-page-1"},
            headers=someone,
        )
        assert answer.status_code == 200, answer.text


def column(tab: Tab, table: str, name: str) -> list[str]:
    """The cells of one column of a table the page shows, by the column's heading."""
    headings = tab.page.locator(f"{table} thead th").all_inner_texts()
    index = headings.index(name) + 1
    return tab.page.locator(f"{table} tbody tr td:nth-child({index})").all_inner_texts()


def test_the_ledger_verifies_and_shows_its_signed_checkpoint(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    consent(gateway, f"auditee-{secrets.token_hex(4)}", "marketing", True)
    sign_in(tab, gateway, auditor)
    expect(tab.page.locator("#checkpoint table")).to_be_visible()
    assert int(column(tab, "#checkpoint", "tree_size")[0]) >= 1
    tab.page.click("#verify")
    expect(tab.page.locator("#verify-result .badge")).to_have_text("chain intact")
    expect(tab.page.locator("#status [role=status]")).to_have_text("chain intact")  # read out too
    verified = gateway.http.get("/v1/audit/ledger/verify", headers=auditor).json()
    assert verified["ok"] is True
    assert column(tab, "#verify-result", "head_hash") == [verified["head_hash"]]
    assert tab.errors == []


def test_the_signed_export_downloads_as_the_jws_the_cli_verifies(
    tab: Tab, gateway: Gateway, auditor: dict[str, str], tmp_path: Path
) -> None:
    """The file an auditor downloads is what `consent-gateway audit verify --export` checks: the
    bare compact JWS, as `audit export` writes it (it was the API's JSON answer)."""
    consent(gateway, f"auditee-{secrets.token_hex(4)}", "marketing", True)
    sign_in(tab, gateway, auditor)
    expect(tab.page.locator("#checkpoint table")).to_be_visible()
    tab.page.fill("#export-from", "2026-12-07")  # refused: a date alone is no RFC 3339 time
    tab.page.click("#export")
    expect(tab.page.locator("#status .error")).to_be_visible()
    tab.page.fill("#export-from", "")
    with tab.page.expect_download() as started:
        tab.page.click("#export")
    # The refusal before is not left standing over the download that followed (it was).
    expect(tab.page.locator("#status")).to_have_text("Downloaded audit-export.jws.")
    download = started.value
    assert download.suggested_filename == "audit-export.jws"
    export, jwks = tmp_path / download.suggested_filename, tmp_path / "jwks.json"
    download.save_as(export)
    text = export.read_text()
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n", text), text[:200]
    jwks.write_text(gateway.http.get("/.well-known/jwks.json").text)
    checked = gateway.server.cli("audit", "verify", "--export", str(export), "--jwks", str(jwks))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["ok"] is True
    assert [e for e in tab.errors if "status of 400" not in e] == []  # the refused date's


def test_consent_events_are_listed_filtered_and_paged(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    ref = consent(gateway, f"auditee-{secrets.token_hex(4)}", "location", True)
    consent(gateway, f"auditee-{secrets.token_hex(4)}", "personalization", True)
    sign_in(tab, gateway, auditor)
    tab.page.click("#tab-events")
    expect(tab.page.locator("#results table")).to_be_visible()
    tab.page.fill("#filter-subject_ref", ref)
    tab.page.select_option("#filter-purpose", "location")
    tab.page.click("#search")
    expect(tab.page.locator("#results tbody tr")).to_have_count(1)
    expect(tab.page.locator("#status [role=status]")).to_have_text("1 shown.")  # read out too
    assert column(tab, "#results", "subject_ref") == [ref]
    assert column(tab, "#results", "action") == ["given"]
    assert tab.errors == []


def test_the_filters_the_api_takes_from_a_set_are_chosen_from_that_set(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    """An auditor typed `rejected` or `frequency_capped` by heart, and a misspelling was refused.
    Each enumerated filter is a list of exactly the values the route's OpenAPI document gives,
    after "any"; the others stay typed."""
    schema = gateway.http.get("/schema/openapi.json").json()["paths"]
    sign_in(tab, gateway, auditor)
    chosen = 0
    for view, path in (("events", "/v1/audit/consent-events"), ("decisions", "/v1/audit/decisions"),
                       ("complaints", "/v1/audit/complaints")):  # fmt: skip
        tab.page.click(f"#tab-{view}")
        expect(tab.page.locator("#results")).to_be_visible()
        for parameter in schema[path]["get"]["parameters"]:
            control = tab.page.locator(f"#filter-{parameter['name']}")
            if not control.count():
                continue  # a filter the dashboard does not offer
            name, enum = parameter["name"], parameter["schema"].get("enum")
            tag = control.evaluate("node => node.tagName")
            if enum is None:
                assert tag == "INPUT", name
                continue
            assert tag == "SELECT", name
            shown = control.locator("option").evaluate_all("nodes => nodes.map((n) => n.value)")
            assert shown == ["", *(value for value in enum if value is not None)], name
            chosen += 1
    assert chosen == 5  # purpose; outcome, reason; status, reason
    assert tab.errors == []


def test_decisions_show_their_reasons(tab: Tab, gateway: Gateway, auditor: dict[str, str]) -> None:
    someone = f"auditee-{secrets.token_hex(4)}"
    ref = consent(gateway, someone, "marketing", False)
    service = {"Authorization": f"Bearer {gateway.key('pushes:write')}"}
    push = gateway.http.post(
        "/v1/pushes",
        headers=service,
        json={"idempotency_key": secrets.token_hex(6), "user_id": someone, "topic": "promotions",
              "title": "Sale", "body": "10% off"},
    ).json()  # fmt: skip
    assert push["outcome"] == "rejected"
    sign_in(tab, gateway, auditor)
    tab.page.click("#tab-decisions")
    tab.page.fill("#filter-subject_ref", ref)
    tab.page.click("#search")
    expect(tab.page.locator("#results tbody tr")).to_have_count(1)
    assert column(tab, "#results", "push_id") == [push["push_id"]]
    assert "no_consent" in column(tab, "#results", "reasons")[0]
    assert tab.errors == []


def shown_as(value: object) -> str:
    """What the page's cell() makes of an API value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def test_complaints_show_the_fields_the_audit_api_answers(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    """Every column is a field of the audit API's complaint rows, shown as answered. The table
    had `actions_taken` and `resolution` (the names of the complaint desk's view), which the
    audit rows do not have, so they were always blank; `subject_ref` and `flagged` were missing."""
    someone = f"complainer-{secrets.token_hex(4)}"
    ref = consent(gateway, someone, "marketing", True)
    filed = gateway.http.post(
        "/v1/me/complaints",
        headers=gateway.as_user(someone),
        json={"reason": "no_consent", "comment": "never"},
    )
    assert filed.status_code == 201, filed.text
    complaint_id = filed.json()["complaint_id"]
    desk = {"Authorization": f"Bearer {gateway.key('complaints:write')}"}
    for step, body in (("acknowledge", None), ("resolve", {"resolution": "consent withdrawn, noted"})):
        answer = gateway.http.post(f"/v1/complaints/{complaint_id}/{step}", headers=desk, json=body)
        assert answer.status_code == 200, answer.text
    listed = gateway.http.get("/v1/audit/complaints", headers=auditor, params={"reason": "no_consent"})
    row = next(r for r in listed.json()["complaints"] if r["complaint_id"] == complaint_id)

    sign_in(tab, gateway, auditor)
    tab.page.click("#tab-complaints")
    expect(tab.page.locator("#results table")).to_be_visible()
    tab.page.select_option("#filter-reason", "no_consent")
    tab.page.click("#search")
    expect(tab.page.locator("#results tbody td", has_text=complaint_id)).to_have_count(1)
    headings = tab.page.locator("#results thead th").all_inner_texts()
    assert set(headings) <= set(row), set(headings) - set(row)
    assert {"subject_ref", "flagged", "actions", "has_resolution"} <= set(headings)
    at = column(tab, "#results", "complaint_id").index(complaint_id)
    shown = {name: column(tab, "#results", name)[at] for name in headings}
    assert shown == {name: shown_as(row[name]) for name in headings}
    assert (shown["subject_ref"], shown["flagged"], shown["has_resolution"]) == (ref, "true", "true")
    assert json.loads(shown["actions"]) == ["marketing_consent_withdrawn", "flagged_for_review"]
    assert tab.errors == []


def test_a_subject_is_looked_up_now_and_at_a_moment(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    ref = consent(gateway, f"auditee-{secrets.token_hex(4)}", "marketing", True)
    sign_in(tab, gateway, auditor)
    tab.page.click("#tab-subject")
    tab.page.fill("#subject-ref", ref)
    tab.page.press("#subject-ref", "Enter")  # as the button does
    expect(tab.page.locator("#subject-result")).to_contain_text('"marketing":{"granted":true')
    expect(tab.page.locator("#status")).to_have_text("Subject: 1 consent events.")  # said, not silent
    tab.page.fill("#subject-at", "2020-01-01T00:00:00Z")
    tab.page.click("#look-up")
    expect(tab.page.locator("#subject-result")).to_contain_text('"marketing":{"granted":false')
    assert tab.errors == []


def test_an_erased_subject_is_shown_with_what_its_answer_means(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    """`erased_at` read as a moment still to come, and `granted: null` as neither given nor
    withdrawn, with nothing on the page to say why."""
    someone = f"auditee-{secrets.token_hex(4)}"
    ref = consent(gateway, someone, "marketing", True)
    assert gateway.http.delete("/v1/me", headers=gateway.as_user(someone)).status_code == 204
    sign_in(tab, gateway, auditor)
    tab.page.click("#tab-subject")
    tab.page.fill("#subject-ref", ref)
    tab.page.click("#look-up")
    expect(tab.page.locator("#subject-erased")).to_contain_text("erased_at is the UTC midnight after it")
    expect(tab.page.locator("#status")).to_have_text(re.compile(r"^Erased subject: \d+ consent events\.$"))
    assert tab.errors == []


def test_the_dashboards_own_calls_are_in_the_access_log(tab: Tab, gateway: Gateway) -> None:
    key = gateway.new_key("audit:read")  # its own: what the access log lists under it is this page's
    headers = {"Authorization": f"Bearer {key}"}
    sign_in(tab, gateway, headers)
    expect(tab.page.locator("#checkpoint table")).to_be_visible()
    tab.page.click("#tab-access")
    expect(tab.page.locator("#results table")).to_be_visible()
    key_id = key.split("_")[1]
    entries = gateway.http.get("/v1/audit/access-log", headers=headers).json()["entries"]
    mine = {e["route"] for e in entries if e["key_id"].endswith(key_id) or key_id in e["key_id"]}
    assert "/v1/audit/ledger/checkpoint" in mine
    assert "/v1/audit/access-log" in mine
    assert tab.errors == []


def test_the_admin_log_lists_who_changed_what(tab: Tab, gateway: Gateway, auditor: dict[str, str]) -> None:
    """The dashboard had no view of it: who made keys, changed the policy or paused campaigns."""
    admin = {"Authorization": f"Bearer {gateway.new_key('admin')}"}
    made = gateway.http.post(
        "/v1/admin/keys", headers=admin, json={"name": "seen", "scopes": ["pushes:write"]}
    )
    assert made.status_code == 201, made.text
    sign_in(tab, gateway, auditor)
    tab.page.click("#tab-admin")
    expect(tab.page.locator("#results table")).to_be_visible()
    listed = gateway.http.get("/v1/audit/admin-log", headers=auditor, params={"limit": 1000}).json()[
        "entries"
    ]
    row = next(e for e in listed if e["action"] == "api_key.created" and e["target"] == made.json()["key_id"])
    expect(tab.page.locator("#results tbody td", has_text=row["target"])).not_to_have_count(0)
    at = column(tab, "#results", "id").index(str(row["id"]))
    assert [column(tab, "#results", name)[at] for name in ("actor", "action", "target")] == [
        row["actor"], "api_key.created", row["target"],
    ]  # fmt: skip
    assert tab.errors == []


def test_a_key_without_audit_scope_is_told_so_and_not_kept(tab: Tab, gateway: Gateway) -> None:
    """A key that may not read the audit routes signs out, as a refused one does: kept, it showed
    the same refusal on every tab and after a reload."""
    sign_in(tab, gateway, {"Authorization": f"Bearer {gateway.key('pushes:write')}"})
    expect(tab.page.locator("#status [role=alert]")).to_contain_text("audit:read")
    expect(tab.page.locator("#sign-in")).to_be_visible()
    assert tab.page.evaluate("sessionStorage.getItem('cgw.audit.key')") is None
    assert [e for e in tab.errors if "status of 403" not in e] == []


def test_an_unknown_key_returns_to_the_sign_in(tab: Tab, gateway: Gateway) -> None:
    sign_in(tab, gateway, {"Authorization": "Bearer cgw_nope_nope"})
    expect(tab.page.locator("#sign-in")).to_be_visible()
    expect(tab.page.locator("#status")).to_contain_text("The API key was refused.")
    assert tab.page.evaluate("sessionStorage.getItem('cgw.audit.key')") is None
    assert [e for e in tab.errors if "status of 401" not in e] == []


def test_a_double_click_on_more_adds_each_page_once(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    """More than a page (100) of events, each page's request slowed, More double-clicked."""
    toggled(gateway, 105)
    listed = gateway.http.get("/v1/audit/consent-events", headers=auditor, params={"limit": 1000})
    total = len(listed.json()["events"])
    assert total > 100

    def slow(route: Route) -> None:
        time.sleep(0.3)
        route.continue_()

    sign_in(tab, gateway, auditor)
    tab.page.route("**/v1/audit/consent-events*", slow)
    tab.page.click("#tab-events")
    expect(tab.page.locator("#results tbody tr")).to_have_count(100)
    while tab.page.locator("#more").is_visible():
        shown = tab.page.locator("#results tbody tr").count()
        tab.page.locator("#more").dblclick()
        expect(tab.page.locator("#results tbody tr")).not_to_have_count(shown)
        expect(tab.page.locator("#more")).to_be_enabled()
    seqs = column(tab, "#results", "seq")
    assert len(seqs) == len(set(seqs)) == total
    assert tab.errors == []


def test_more_pressed_from_the_keyboard_keeps_the_focus(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    """Disabled while its page loaded, More dropped the focus to the page, and hidden by the last
    page left it nowhere: an auditor on the keyboard started again from the top each time."""
    toggled(gateway, 101)
    sign_in(tab, gateway, auditor)
    tab.page.click("#tab-events")
    more = tab.page.locator("#more")
    expect(more).to_be_visible()
    while more.is_visible():
        shown = tab.page.locator("#results tbody tr").count()
        more.focus()
        tab.page.keyboard.press("Enter")
        expect(tab.page.locator("#results tbody tr")).not_to_have_count(shown)
        expect(more if more.is_visible() else tab.page.locator("#results")).to_be_focused()
    expect(tab.page.locator("#results")).to_be_focused()  # the last page hid More
    assert tab.errors == []


def test_a_subject_lookup_needs_a_subject_ref(tab: Tab, gateway: Gateway, auditor: dict[str, str]) -> None:
    sign_in(tab, gateway, auditor)
    tab.page.click("#tab-subject")
    tab.page.fill("#subject-ref", "..")
    tab.page.click("#look-up")
    expect(tab.page.locator("#status [role=alert]")).to_contain_text("subject_ref")
    expect(tab.page.locator("#subject-ref")).to_have_attribute("aria-invalid", "true")
    expect(tab.page.locator("#subject-ref")).to_be_focused()
    assert tab.errors == []


def test_a_refused_search_leaves_no_rows_of_the_last_one(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    consent(gateway, f"auditee-{secrets.token_hex(4)}", "marketing", True)
    sign_in(tab, gateway, auditor)
    tab.page.click("#tab-events")
    expect(tab.page.locator("#results table")).to_be_visible()
    tab.page.fill("#filter-from", "garbage")
    tab.page.click("#search")
    # Named once, and by what the field takes: it was "from: Expected `str` matching regex
    # '^[0-9]{4}-...' (from)".
    alert = tab.page.locator("#status [role=alert]")
    expect(alert).to_have_text("from: Expected an RFC 3339 time, such as 2026-11-23T10:00:00Z")
    expect(tab.page.locator("#results table")).to_have_count(0)
    expect(tab.page.locator("#more")).to_be_hidden()
    assert [e for e in tab.errors if "status of 400" not in e] == []


def test_a_view_chosen_from_the_keyboard_keeps_the_focus_and_is_marked_current(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    sign_in(tab, gateway, auditor)
    expect(tab.page.locator("#tab-ledger")).to_have_attribute("aria-current", "page")
    tab.page.focus("#tab-decisions")
    tab.page.keyboard.press("Enter")
    expect(tab.page.locator("#tab-decisions")).to_have_attribute("aria-current", "page")
    expect(tab.page.locator("#tab-decisions")).to_be_focused()
    assert tab.page.locator("nav.tabs [aria-current]").count() == 1
    # Its text on the dark of the current tab, legible (the accent blue on it was 2.5:1).
    expect(tab.page.locator("#tab-decisions")).to_have_css("color", "rgb(255, 255, 255)")
    assert tab.errors == []


def test_a_search_after_a_refused_one_clears_the_refusal(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    sign_in(tab, gateway, auditor)
    tab.page.click("#tab-decisions")
    expect(tab.page.locator("#results")).to_be_visible()
    tab.page.fill("#filter-from", "bogus")
    tab.page.click("#search")
    expect(tab.page.locator("#status [role=alert]")).to_be_visible()
    tab.page.fill("#filter-from", "")
    tab.page.select_option("#filter-outcome", "queued")
    # The status is cleared at the click: the search's answer is waited for, and must be taken.
    with tab.page.expect_response(lambda r: "/v1/audit/decisions" in r.url) as answered:
        tab.page.click("#search")
    assert answered.value.status == 200
    expect(tab.page.locator("#status [role=alert]")).to_have_count(0)
    assert [e for e in tab.errors if "status of 400" not in e] == []


def test_a_refused_lookup_shows_no_answer_of_the_last_one(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    ref = consent(gateway, f"auditee-{secrets.token_hex(4)}", "marketing", True)
    sign_in(tab, gateway, auditor)
    tab.page.click("#tab-subject")
    tab.page.fill("#subject-ref", ref)
    tab.page.click("#look-up")
    expect(tab.page.locator("#subject-result table")).not_to_have_count(0)
    tab.page.fill("#subject-at", "nonsense")
    tab.page.click("#look-up")
    expect(tab.page.locator("#status [role=alert]")).to_be_visible()
    expect(tab.page.locator("#subject-result table")).to_have_count(0)
    assert [e for e in tab.errors if "status of 400" not in e] == []


def test_a_refused_verification_does_not_stay_verifying(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    sign_in(tab, gateway, auditor)
    expect(tab.page.locator("#checkpoint table")).to_be_visible()

    def busy(route: Route) -> None:
        body = '{"status_code": 503, "detail": "storage is busy; retry"}'
        route.fulfill(status=503, content_type="application/json", body=body)

    tab.page.route("**/v1/audit/ledger/verify", busy)
    tab.page.click("#verify")
    expect(tab.page.locator("#status [role=alert]")).to_be_visible()
    expect(tab.page.locator("#verify-result")).to_be_empty()
    assert [e for e in tab.errors if "status of 503" not in e] == []


def test_more_goes_on_with_the_search_shown_not_the_filters_typed_since(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    """Regression: More built its query from the filters as they were now, with the last search's
    cursor: a subject_ref typed and not searched gave another subject's rows after that cursor,
    and the rest of the search shown were never listed."""
    first, second = (gateway.as_user(f"pager-{secrets.token_hex(3)}") for _ in range(2))
    refs: dict[str, str] = {}
    for name, who, count in (("first", first, 105), ("second", second, 3)):
        for index in range(count):
            answer = gateway.http.put(
                "/v1/me/consents/marketing",
                json={"granted": index % 2 == 0, "notice_version": "audit-page-1"},
                headers=who,
            )
            assert answer.status_code == 200, answer.text
        refs[name] = answer.json()["receipt"]["subject_ref"]
    sign_in(tab, gateway, auditor)
    tab.page.click("#tab-events")
    expect(tab.page.locator("#results table")).to_be_visible()
    tab.page.fill("#filter-subject_ref", refs["first"])
    tab.page.click("#search")
    expect(tab.page.locator("#results tbody tr")).to_have_count(100)
    tab.page.fill("#filter-subject_ref", refs["second"])  # typed, not searched
    tab.page.click("#more")
    expect(tab.page.locator("#results tbody tr")).not_to_have_count(100)
    expect(tab.page.locator("#more")).to_be_hidden()
    assert column(tab, "#results", "subject_ref") == [refs["first"]] * 105
    seqs = [int(seq) for seq in column(tab, "#results", "seq")]
    assert len(set(seqs)) == 105
    # Searched, the filters typed are the search shown.
    tab.page.click("#search")
    expect(tab.page.locator("#results tbody tr")).to_have_count(3)
    assert column(tab, "#results", "subject_ref") == [refs["second"]] * 3
    assert tab.errors == []


@pytest.mark.parametrize(
    ("first_invalid_seq", "problem", "unbacked", "shown"),
    [
        (7, None, 0, ["chain broken at seq 7"]),
        (None, "unknown_key", 0, ["checkpoint problem: unknown_key"]),
        (None, "ledger_shorter", 0, ["checkpoint problem: ledger_shorter"]),
        (None, "root_differs", 0, ["checkpoint problem: root_differs"]),
        (7, "root_differs", 0, ["chain broken at seq 7", "checkpoint problem: root_differs"]),
        (None, None, 2, ["2 consent state(s) the ledger does not back"]),
        (None, None, None, ["consent state not checked"]),
    ],
)
def test_a_failed_verification_says_what_failed(
    tab: Tab,
    gateway: Gateway,
    auditor: dict[str, str],
    first_invalid_seq: int | None,
    problem: str | None,
    unbacked: int | None,
    shown: list[str],
) -> None:
    """Regression: every failed verification read "chain broken", a checkpoint the gateway could
    not check (a key it does not list, say) with an intact chain included."""
    sign_in(tab, gateway, auditor)
    expect(tab.page.locator("#checkpoint table")).to_be_visible()
    verified = gateway.http.get("/v1/audit/ledger/verify", headers=auditor).json()
    failed = verified | {
        "ok": False, "first_invalid_seq": first_invalid_seq, "checkpoint_problem": problem,
        "consents_unbacked": unbacked,
    }  # fmt: skip

    def answered(route: Route) -> None:
        route.fulfill(status=200, content_type="application/json", body=json.dumps(failed))

    tab.page.route("**/v1/audit/ledger/verify", answered)
    tab.page.click("#verify")
    badges = tab.page.locator("#verify-result .badge")
    expect(badges).to_have_text(shown)
    for index in range(len(shown)):
        expect(badges.nth(index)).to_have_class(re.compile(r"\bbad\b"))
    if first_invalid_seq is None:
        expect(tab.page.locator("#verify-result")).not_to_contain_text("chain broken")
    if problem == "unknown_key":
        expect(tab.page.locator("#verify-result")).to_contain_text("a key this gateway does not list")
    assert column(tab, "#verify-result", "checkpoint_problem") == [problem or ""]
    assert tab.errors == []


def test_only_the_latest_lookup_is_shown_and_a_view_left_says_nothing(
    tab: Tab, gateway: Gateway, auditor: dict[str, str]
) -> None:
    """A slow answer for the subject looked up first replaced the next lookup's, under the next
    one's subject_ref; and a listing left for another view put its "shown" on that view's status."""
    first = consent(gateway, f"auditee-{secrets.token_hex(4)}", "marketing", True)
    second = consent(gateway, f"auditee-{secrets.token_hex(4)}", "location", True)
    sign_in(tab, gateway, auditor)
    held: list[Route] = []

    def hold_the_first(route: Route) -> None:
        if first in route.request.url and not held:
            held.append(route)  # answered below, after the second lookup's answer is shown
        else:
            route.continue_()

    tab.page.route("**/v1/audit/subjects/**", hold_the_first)
    tab.page.click("#tab-subject")
    tab.page.fill("#subject-ref", first)
    tab.page.click("#look-up")
    tab.page.fill("#subject-ref", second)
    tab.page.click("#look-up")
    expect(tab.page.locator("#subject-result")).to_contain_text(second)
    assert len(held) == 1
    held[0].continue_()
    tab.page.wait_for_timeout(500)
    expect(tab.page.locator("#subject-result")).to_contain_text(second)
    expect(tab.page.locator("#subject-result")).not_to_contain_text(first)

    listed: list[Route] = []
    tab.page.route("**/v1/audit/consent-events**", lambda route: listed.append(route))
    tab.page.click("#tab-events")
    expect(tab.page.locator("#tab-events")).to_have_attribute("aria-current", "page")
    tab.page.click("#tab-ledger")
    tab.page.click("#verify")
    expect(tab.page.locator("#status")).to_contain_text("chain intact")
    assert len(listed) == 1
    listed[0].continue_()
    tab.page.wait_for_timeout(500)
    expect(tab.page.locator("#status")).to_contain_text("chain intact")
    assert tab.errors == []


def test_on_a_narrow_screen_a_wide_table_scrolls_in_its_own_region(
    browser: Browser, gateway: Gateway, auditor: dict[str, str]
) -> None:
    """At 320 px the decisions' table made the whole page scroll sideways (WCAG 1.4.10)."""
    someone = f"narrow-{secrets.token_hex(4)}"
    consent(gateway, someone, "marketing", False)
    service = {"Authorization": f"Bearer {gateway.key('pushes:write')}"}
    gateway.http.post(
        "/v1/pushes",
        headers=service,
        json={"idempotency_key": secrets.token_hex(6), "user_id": someone, "topic": "promotions",
              "title": "Sale", "body": "10% off"},
    )  # fmt: skip
    context = browser.new_context(locale="en-US", viewport={"width": 320, "height": 640})
    try:
        page = context.new_page()
        page.goto(f"{gateway.server.base}/audit/")
        page.fill("#api-key", auditor["Authorization"].removeprefix("Bearer "))
        page.get_by_role("button", name="Continue").click()
        page.click("#tab-decisions")
        region = page.get_by_role("region", name="Decisions")
        expect(region.locator("tbody tr").first).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 320
        assert region.evaluate("(r) => r.scrollWidth > r.clientWidth")  # the table scrolls, inside it
        assert region.get_attribute("tabindex") == "0"  # reachable from the keyboard
        # Each cell on one line: broken anywhere, the cells were a character or two a line and
        # a row 1,000 px tall, the region barely wider than the screen.
        broken = region.evaluate(
            """(r) => [...r.querySelectorAll("tbody tr:first-child td")]
                .filter((td) => { const range = document.createRange(); range.selectNodeContents(td);
                                  return range.getClientRects().length > 1; })
                .map((td) => td.textContent)"""
        )
        assert broken == []
    finally:
        context.close()
