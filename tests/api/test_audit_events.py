"""Audit API, the reading half: consent events (filters, cursor paging under concurrent appends),
one subject's state at a moment, the decision log and complaints — and that a lookup by user_id
leaves no trace of the user_id on disk."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem, readers, scan_bytes, scan_tables

from gateway.runtime import Runtime
from storage import ledger

Client = TestClient[Litestar]
AsUser = Callable[[str], Headers]
Json = dict[str, Any]

ALICE = "alice.audit.7f3e@example.com"
BOB = "+8613800000777"
EVENT_FIELDS = {
    "seq", "at", "subject_ref", "purpose", "action", "notice_version", "actor", "source", "prev_hash", "hash",
}  # fmt: skip


@pytest.fixture
def auditor(as_key: Callable[..., Headers]) -> Headers:
    return as_key("audit:read")


def consent(client: Client, headers: Headers, purpose: str, granted: bool, notice: str = "v1") -> None:
    response = client.put(
        f"/v1/me/consents/{purpose}", headers=headers, json={"granted": granted, "notice_version": notice}
    )
    assert response.status_code == 200, response.text


def ref_of(client: Client, headers: Headers) -> str:
    ref: str = client.get("/v1/me/preferences", headers=headers).json()["subject_ref"]
    return ref


def get(client: Client, path: str, auditor: Headers, **params: Any) -> Json:
    response = client.get(f"/v1/audit{path}", headers=auditor, params=params)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


# -- consent events ----------------------------------------------------------------------------


def test_events_carry_the_chain_and_filter_by_subject_user_purpose_and_time(
    client: Client, runtime: Runtime, as_user: AsUser, auditor: Headers, clock: FakeClock
) -> None:
    alice, bob = as_user(ALICE), as_user(BOB)
    consent(client, alice, "marketing", True)
    clock.advance(hours=1)
    consent(client, bob, "personalization", True, "v2")
    clock.advance(hours=1)
    consent(client, alice, "marketing", False, "v3")
    alice_ref, bob_ref = ref_of(client, alice), ref_of(client, bob)

    every = get(client, "/consent-events", auditor)
    assert every["next_cursor"] is None
    stored = list(ledger.events(runtime.store.data.reader()))
    assert [e["seq"] for e in every["events"]] == [e.seq for e in stored] == [1, 2, 3]
    for wire, event in zip(every["events"], stored, strict=True):
        assert set(wire) == EVENT_FIELDS
        assert (wire["hash"], wire["prev_hash"]) == (event.hash.hex(), event.prev_hash.hex())
    first = every["events"][0]
    assert first | {"hash": None, "prev_hash": None} == {
        "seq": 1, "at": "2026-11-23T10:00:00Z", "subject_ref": alice_ref, "purpose": "marketing",
        "action": "given", "notice_version": "v1", "actor": "user", "source": "preference_center",
        "hash": None, "prev_hash": None,
    }  # fmt: skip
    assert first["prev_hash"] == "00" * 32

    by_ref = get(client, "/consent-events", auditor, subject_ref=alice_ref)["events"]
    assert [(e["seq"], e["action"], e["notice_version"]) for e in by_ref] == [
        (1, "given", "v1"),
        (3, "withdrawn", "v3"),
    ]
    assert get(client, "/consent-events", auditor, user_id=ALICE)["events"] == by_ref
    assert get(client, "/consent-events", auditor, user_id=ALICE, subject_ref=bob_ref)["events"] == []
    assert get(client, "/consent-events", auditor, user_id="nobody-at-all")["events"] == []
    by_purpose = get(client, "/consent-events", auditor, purpose="personalization")["events"]
    assert [(e["seq"], e["subject_ref"]) for e in by_purpose] == [(2, bob_ref)]
    window = get(
        client, "/consent-events", auditor, **{"from": "2026-11-23T11:00:00Z", "to": "2026-11-23T12:00:00Z"}
    )["events"]
    assert [e["seq"] for e in window] == [2]  # from inclusive, to exclusive
    offset = get(client, "/consent-events", auditor, **{"from": "2026-11-23T19:30:00+08:00"})["events"]
    assert [e["seq"] for e in offset] == [3]


def test_cursor_pages_stay_stable_while_events_are_appended(
    client: Client, as_user: AsUser, auditor: Headers
) -> None:
    alice = as_user(ALICE)
    for granted in (True, False, True, False, True):
        consent(client, alice, "marketing", granted)

    first = get(client, "/consent-events", auditor, limit=2)
    assert [e["seq"] for e in first["events"]] == [1, 2]
    cursor = first["next_cursor"]
    assert isinstance(cursor, str)
    assert "2" not in cursor or not cursor.isdigit()  # opaque, not a bare number

    for granted in (False, True, False):  # appended between pages
        consent(client, as_user(BOB), "location", granted)

    seen = [e["seq"] for e in first["events"]]
    while cursor is not None:
        page = get(client, "/consent-events", auditor, limit=2, cursor=cursor)
        seen += [e["seq"] for e in page["events"]]
        cursor = page["next_cursor"]
    assert seen == list(range(1, 9))
    assert get(client, "/consent-events", auditor, limit=2) == first
    assert len(get(client, "/consent-events", auditor, limit=1000)["events"]) == 8


BAD_LISTING_PARAMETERS: list[tuple[Json, str]] = [
    ({"limit": 1001}, "limit"),
    ({"limit": 0}, "limit"),
    # Litestar read these as numbers (1000, 10, 5, 5, 50) where the access log, rightly, did not.
    ({"limit": "1e3"}, "limit"),
    ({"limit": "1_0"}, "limit"),
    ({"limit": "+5"}, "limit"),
    ({"limit": "5.0"}, "limit"),
    ({"limit": "050"}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"from": "2026-11-23T10:00:00"}, "from"),  # no offset: ambiguous
    ({"from": "yesterday"}, "from"),
    ({"from": "2026-11-24T00:00:00Z", "to": "2026-11-23T00:00:00Z"}, "from"),
    ({"purpose": "astrology"}, "purpose"),
    ({"subject_ref": "alice"}, "subject_ref"),
]


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def edge_parameters(kind: str) -> list[tuple[Json, str]]:
    """Each of these once answered 500: a position past SQLite's integers, a digit that is not
    ASCII (`str.isdigit` accepts it), and times that leave datetime's range once in UTC."""
    return [
        ({"cursor": _cursor(f"{kind}:" + "9" * 20)}, "cursor"),
        ({"cursor": _cursor(f"{kind}:\u0663")}, "cursor"),  # ARABIC-INDIC DIGIT THREE
        ({"from": "0001-01-01T00:00:00+01:00"}, "from"),
        ({"to": "9999-12-31T23:59:59-01:00"}, "to"),
    ]


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/consent-events", "events"), ("/decisions", "decisions"), ("/complaints", "complaints")],
)
def test_edge_values_are_refused_by_name_on_every_listing(
    client: Client, auditor: Headers, path: str, kind: str
) -> None:
    for params, field in edge_parameters(kind):
        assert_problem(client.get(f"/v1/audit{path}", headers=auditor, params=params), 400, field)


def test_edge_values_are_refused_by_the_access_log_export_and_subject(
    client: Client, auditor: Headers
) -> None:
    huge = _cursor("access:" + "9" * 20)
    assert_problem(
        client.get("/v1/audit/access-log", headers=auditor, params={"cursor": huge}), 400, "cursor"
    )
    early = {"from": "0001-01-01T00:00:00+01:00"}
    assert_problem(client.get("/v1/audit/export", headers=auditor, params=early), 400, "from")
    ref = "sub_" + "a" * 52
    late = {"at": "9999-12-31T23:59:59-01:00"}
    assert_problem(client.get(f"/v1/audit/subjects/{ref}", headers=auditor, params=late), 400, "at")


def test_bad_listing_parameters_are_named(client: Client, auditor: Headers) -> None:
    for params, field in BAD_LISTING_PARAMETERS:
        assert_problem(client.get("/v1/audit/consent-events", headers=auditor, params=params), 400, field)


def test_a_cursor_from_another_listing_is_refused(client: Client, as_user: AsUser, auditor: Headers) -> None:
    for granted in (True, False):
        consent(client, as_user(ALICE), "marketing", granted)
    for _ in range(2):
        client.get("/v1/audit/ledger/verify", headers=auditor)
    cursor = get(client, "/access-log", auditor, limit=1)["next_cursor"]
    response = client.get("/v1/audit/consent-events", headers=auditor, params={"cursor": cursor})
    assert_problem(response, 400, "cursor")


# -- one subject -------------------------------------------------------------------------------


def test_subject_state_at_any_moment_across_grant_withdraw_grant(
    client: Client, as_user: AsUser, auditor: Headers, clock: FakeClock
) -> None:
    alice = as_user(ALICE)
    consent(client, alice, "marketing", True, "notice-1")  # 10:00
    clock.advance(hours=1)
    consent(client, alice, "marketing", False, "notice-2")  # 11:00
    clock.advance(hours=1)
    consent(client, alice, "marketing", True, "notice-3")  # 12:00
    consent(client, alice, "location", True, "notice-3")
    ref = ref_of(client, alice)

    def marketing_at(moment: str | None) -> Json:
        params = {} if moment is None else {"at": moment}
        body = get(client, f"/subjects/{ref}", auditor, **params)
        state: Json = body["consents"]["marketing"]
        return state

    assert marketing_at("2026-11-23T09:59:59Z") == {"granted": False, "notice_version": None, "since": None}
    assert marketing_at("2026-11-23T10:00:00Z") == {
        "granted": True, "notice_version": "notice-1", "since": "2026-11-23T10:00:00Z",
    }  # fmt: skip
    assert marketing_at("2026-11-23T19:30:00+08:00") == {
        "granted": False, "notice_version": "notice-2", "since": "2026-11-23T11:00:00Z",
    }  # fmt: skip
    assert marketing_at(None) == {
        "granted": True,
        "notice_version": "notice-3",
        "since": "2026-11-23T12:00:00Z",
    }

    now = get(client, f"/subjects/{ref}", auditor)
    assert now["status"] == "active"
    assert now["as_of"] == "2026-11-23T12:00:00Z"
    assert set(now["consents"]) == {"marketing", "personalization", "location"}
    assert now["consents"]["personalization"]["granted"] is False
    assert now["consents"]["location"]["granted"] is True
    assert [(e["purpose"], e["action"], e["notice_version"]) for e in now["history"]] == [
        ("marketing", "given", "notice-1"),
        ("marketing", "withdrawn", "notice-2"),
        ("marketing", "given", "notice-3"),
        ("location", "given", "notice-3"),
    ]
    before = get(client, f"/subjects/{ref}", auditor, at="2026-11-23T10:30:00Z")
    assert before["history"] == now["history"]  # the full history, whatever the moment asked about
    assert before["consents"]["location"]["granted"] is False


def test_unknown_and_erased_subjects(client: Client, as_user: AsUser, auditor: Headers) -> None:
    assert_problem(client.get(f"/v1/audit/subjects/sub_{'a' * 52}", headers=auditor), 404, "subject_ref")
    assert_problem(client.get("/v1/audit/subjects/alice", headers=auditor), 400, "subject_ref")
    alice = as_user(ALICE)
    consent(client, alice, "marketing", True)
    ref = ref_of(client, alice)
    assert client.delete("/v1/me/", headers=alice).status_code == 204

    erased = get(client, f"/subjects/{ref}", auditor)
    assert erased["status"] == "erased"
    assert erased["history"] == []
    assert all(state["granted"] is False for state in erased["consents"].values())  # none held now
    events = get(client, "/consent-events", auditor)["events"]
    assert [(e["action"], e["subject_ref"]) for e in events] == [("given", None), ("subject.erased", None)]
    assert get(client, "/ledger/verify", auditor)["ok"] is True


def test_an_erasure_is_dated_by_its_day_never_by_the_moment_its_ledger_event_bears(
    client: Client, runtime: Runtime, as_user: AsUser, auditor: Headers, clock: FakeClock
) -> None:
    """The `subject.erased` event names the subject's internal id and bears the erasure's moment:
    a tombstone answering the same moment for the ref linked the two, and through the id the
    erased subject's whole ledger history."""
    alice = as_user(ALICE)
    consent(client, alice, "marketing", True)
    ref = ref_of(client, alice)
    clock.advance(minutes=67, seconds=42)
    assert client.delete("/v1/me/", headers=alice).status_code == 204

    events = get(client, "/consent-events", auditor)["events"]
    (erasure,) = [e for e in events if e["action"] == "subject.erased"]
    assert erasure["at"] == "2026-11-23T11:07:42Z"
    assert get(client, f"/subjects/{ref}", auditor)["erased_at"] == "2026-11-24T00:00:00Z"
    stored = runtime.store.directory.erased_at(ref)
    assert stored is not None
    assert stored.isoformat() == "2026-11-24T00:00:00+00:00"


def test_a_user_id_lookup_leaves_no_trace_on_disk(
    client: Client, runtime: Runtime, as_user: AsUser, auditor: Headers, data_dir: Any
) -> None:
    consent(client, as_user(ALICE), "marketing", True)
    assert len(get(client, "/consent-events", auditor, user_id=ALICE)["events"]) == 1
    never_seen = "carol.lookup.only.91c2@example.com"
    assert get(client, "/consent-events", auditor, user_id=never_seen)["events"] == []

    # What SQLite holds, column by column (the files' bytes are encrypted page by page, so their
    # scan only guards against a file written in the clear), and the files.
    assert scan_tables(readers(runtime), [ALICE, never_seen]) == {}
    runtime.store.data.checkpoint()
    assert scan_bytes(data_dir, [ALICE, never_seen]) == {}
    entries = get(client, "/access-log", auditor)["entries"]
    lookups = [e["filters"] for e in entries if e["route"] == "/v1/audit/consent-events"]
    assert lookups == [
        {"user_id_subject_ref": runtime.store.pseudonyms.subject_ref(ALICE)},
        {"user_id_subject_ref": runtime.store.pseudonyms.subject_ref(never_seen)},
    ]


# -- decisions and complaints ------------------------------------------------------------------


def push(client: Client, key: Headers, user_id: str, n: int, **fields: Any) -> Json:
    body = {
        "idempotency_key": f"idem-{n}", "user_id": user_id, "topic": "promotions",
        "title": "Secret winter sale title", "body": "Secret body text", **fields,
    }  # fmt: skip
    response = client.post("/v1/pushes", headers=key, json=body)
    assert response.status_code == 200, response.text
    answer: Json = response.json()
    return answer


def test_decision_log_filters_and_never_shows_content(
    client: Client, as_user: AsUser, as_key: Callable[..., Headers], auditor: Headers, clock: FakeClock
) -> None:
    alice = as_user(ALICE)
    consent(client, alice, "marketing", True)
    assert (
        client.post(
            "/v1/me/devices", headers=alice, json={"platform": "fcm", "token": "fcm-token-1"}
        ).status_code
        == 201
    )
    service = as_key("pushes:write", "campaigns:write")
    campaign = client.post("/v1/campaigns", headers=service, json={"name": "winter", "topic": "promotions"})
    campaign_id = campaign.json()["campaign_id"]
    queued = push(client, service, ALICE, 1, campaign_id=campaign_id, variant="A")
    clock.advance(minutes=5)
    rejected = push(client, service, BOB, 2)  # Bob never consented
    assert (queued["outcome"], rejected["outcome"]) == ("queued", "rejected")
    alice_ref = ref_of(client, alice)

    every = get(client, "/decisions", auditor)
    assert [d["push_id"] for d in every["decisions"]] == [queued["push_id"], rejected["push_id"]]
    first = every["decisions"][0]
    assert set(first) == {
        "push_id", "subject_ref", "topic", "campaign_id", "variant", "outcome", "status", "reasons",
        "final_reasons", "final_policy_version", "policy_version", "created_at",
    }  # fmt: skip
    assert (first["subject_ref"], first["campaign_id"], first["variant"]) == (alice_ref, campaign_id, "A")
    assert isinstance(first["policy_version"], int)
    assert first["created_at"] == "2026-11-23T10:00:00Z"
    text = client.get("/v1/audit/decisions", headers=auditor).text
    assert "Secret" not in text
    assert ALICE not in text

    def ids(**params: Any) -> list[str]:
        return [d["push_id"] for d in get(client, "/decisions", auditor, **params)["decisions"]]

    code = rejected["reasons"][0]["code"]
    assert ids(outcome="rejected") == [rejected["push_id"]]
    assert ids(reason=code) == [rejected["push_id"]]
    assert ids(subject_ref=alice_ref) == [queued["push_id"]]
    assert ids(campaign_id=campaign_id) == [queued["push_id"]]
    assert ids(push_id=rejected["push_id"]) == [rejected["push_id"]]
    assert ids(**{"from": "2026-11-23T10:01:00Z"}) == [rejected["push_id"]]
    page = get(client, "/decisions", auditor, limit=1)
    assert ids(limit=1, cursor=page["next_cursor"]) == [rejected["push_id"]]


def test_complaints_listing_hides_the_comment(
    client: Client, as_user: AsUser, as_key: Callable[..., Headers], auditor: Headers
) -> None:
    alice = as_user(ALICE)
    filed = client.post(
        "/v1/me/complaints", headers=alice, json={"reason": "irrelevant", "comment": "private words 42"}
    )
    assert filed.status_code in {200, 201}, filed.text
    other = client.post("/v1/me/complaints", headers=as_user(BOB), json={"reason": "too_frequent"})
    assert other.status_code in {200, 201}, other.text

    listed = get(client, "/complaints", auditor)["complaints"]
    assert [c["reason"] for c in listed] == ["irrelevant", "too_frequent"]
    assert (listed[0]["has_comment"], listed[1]["has_comment"]) == (True, False)
    assert listed[0]["subject_ref"] == ref_of(client, alice)
    assert isinstance(listed[0]["actions"], list)
    assert "comment" not in listed[0]
    assert "private words" not in client.get("/v1/audit/complaints", headers=auditor).text
    only = get(client, "/complaints", auditor, reason="too_frequent")["complaints"]
    assert [c["complaint_id"] for c in only] == [other.json()["complaint_id"]]
    assert get(client, "/complaints", auditor, status="resolved")["complaints"] == []


def test_an_erased_subject_at_an_earlier_moment_is_unknown_not_refused(
    client: Client, as_user: AsUser, auditor: Headers, clock: FakeClock
) -> None:
    """Marketing was granted at 10:00 and the subject erased at 11:00. Asked about 10:30, the
    gateway once answered `granted: false`, a claim the unreadable history cannot back: now null."""
    alice = as_user(ALICE)
    consent(client, alice, "marketing", True)
    ref = ref_of(client, alice)
    clock.advance(hours=1)
    assert client.delete("/v1/me/", headers=alice).status_code == 204
    earlier = get(client, f"/subjects/{ref}", auditor, at="2026-11-23T10:30:00Z")
    assert (earlier["status"], earlier["as_of"], earlier["history"]) == ("erased", "2026-11-23T10:30:00Z", [])
    assert earlier["consents"]["marketing"] == {"granted": None, "notice_version": None, "since": None}
    assert all(state["granted"] is None for state in earlier["consents"].values())
    assert earlier["erased_at"] == "2026-11-24T00:00:00Z"  # its day only: the moment is the ledger's
    for after in ("2026-11-23T11:00:00Z", "2026-11-23T12:00:00Z"):
        later = get(client, f"/subjects/{ref}", auditor, at=after)
        assert all(state["granted"] is False for state in later["consents"].values()), after
    assert all(s["granted"] is False for s in get(client, f"/subjects/{ref}", auditor)["consents"].values())


def test_a_subject_who_came_back_is_unknown_before_the_erasure_not_refused(
    client: Client, as_user: AsUser, auditor: Headers, clock: FakeClock
) -> None:
    """Regression: coming back lifted the tombstone, so the new subject's clean slate was replayed
    over the time before the erasure: `granted: false` at 10:30, when marketing had been granted."""
    alice = as_user(ALICE)
    consent(client, alice, "marketing", True)
    ref = ref_of(client, alice)
    clock.advance(hours=1)
    assert client.delete("/v1/me/", headers=alice).status_code == 204
    clock.advance(hours=1)
    consent(client, as_user(ALICE), "personalization", True)  # 12:00: back, a new subject
    assert ref_of(client, as_user(ALICE)) == ref

    earlier = get(client, f"/subjects/{ref}", auditor, at="2026-11-23T10:30:00Z")
    assert (earlier["status"], earlier["erased_at"]) == ("active", "2026-11-24T00:00:00Z")
    assert all(state["granted"] is None for state in earlier["consents"].values())
    # The tombstone keeps the erasure's day, not its moment (11:00): in that day, up to now, what
    # was held is unknown too.
    between = get(client, f"/subjects/{ref}", auditor, at="2026-11-23T11:30:00Z")
    assert all(state["granted"] is None for state in between["consents"].values())
    now = get(client, f"/subjects/{ref}", auditor)
    consents = now["consents"]
    assert (consents["personalization"]["granted"], consents["marketing"]["granted"]) == (True, False)
    assert [e["purpose"] for e in now["history"]] == ["personalization"]
    # Review: from the new subject's creation (12:00) on the erasure is past, whatever its day.
    clock.advance(hours=1)
    since = get(client, f"/subjects/{ref}", auditor, at="2026-11-23T12:30:00Z")["consents"]
    assert {p: state["granted"] for p, state in since.items()} == {
        "marketing": False,
        "personalization": True,
        "location": False,
    }


def test_a_subject_made_again_after_an_erasure_mid_request_is_created_after_it(
    client: Client,
    runtime: Runtime,
    as_user: AsUser,
    auditor: Headers,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review of 95216ac: a first request's subject was erased (10:05) while the request made it
    (10:00); the request made one again, stamped with the time it read first, so the audit
    view took the erasure as past from 10:00 and answered `false` at 10:02, before it."""
    directory = runtime.store.directory
    ref = runtime.store.pseudonyms.subject_ref(ALICE)
    ensure, calls = directory.ensure, list[Any]()

    def ensure_then_erased(subject_ref: str, now: Any) -> Any:
        made = ensure(subject_ref, now)
        if not calls:  # the user's erasure runs whole meanwhile
            clock.advance(minutes=5)
            directory.erase(subject_ref, clock())
        calls.append(now)
        return made

    monkeypatch.setattr(directory, "ensure", ensure_then_erased)
    consent(client, as_user(ALICE), "marketing", True)
    assert len(calls) == 2

    earlier = get(client, f"/subjects/{ref}", auditor, at="2026-11-23T10:02:00Z")
    assert all(state["granted"] is None for state in earlier["consents"].values())
    assert get(client, f"/subjects/{ref}", auditor)["consents"]["marketing"]["granted"] is True


def test_a_subject_created_with_a_time_read_before_an_erasure_is_not_taken_as_after_it(
    client: Client,
    runtime: Runtime,
    as_user: AsUser,
    auditor: Headers,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review of cf4a76f: a request read the time (10:00), and while it waited to create the
    subject the user's other requests made one, granted marketing (10:01) and erased it (10:03);
    the subject it then created was stamped 10:00, and the audit view, taking the erasure as
    past from a subject's creation, answered `false` at 10:02, when marketing was held."""
    directory = runtime.store.directory
    ref = runtime.store.pseudonyms.subject_ref(ALICE)
    ensure, lives = directory.ensure, list[str]()

    def another_life_first(subject_ref: str, now: Any) -> Any:
        if not lives:
            lives.append("meanwhile")
            clock.advance(minutes=1)
            consent(client, as_user(ALICE), "marketing", True)
            clock.advance(minutes=2)
            assert client.delete("/v1/me/", headers=as_user(ALICE)).status_code == 204
        return ensure(subject_ref, now)

    monkeypatch.setattr(directory, "ensure", another_life_first)
    consent(client, as_user(ALICE), "personalization", True)  # began at 10:00
    assert lives == ["meanwhile"]

    earlier = get(client, f"/subjects/{ref}", auditor, at="2026-11-23T10:02:00Z")
    assert all(state["granted"] is None for state in earlier["consents"].values())
    now = get(client, f"/subjects/{ref}", auditor)["consents"]
    assert (now["personalization"]["granted"], now["marketing"]["granted"]) == (True, False)


@pytest.mark.parametrize("value", ["0.5", "1e9", "12", "20261123", "2026-02-30T10:00:00Z"])
@pytest.mark.parametrize("path", ["/consent-events", "/decisions", "/complaints", "/export"])
@pytest.mark.parametrize("name", ["from", "to"])
def test_a_number_or_an_impossible_day_is_no_time(
    client: Client, auditor: Headers, path: str, name: str, value: str
) -> None:
    """Regression: a bare number was read as Unix seconds, answered as a time in 1970."""
    problem = assert_problem(client.get(f"/v1/audit{path}", headers=auditor, params={name: value}), 400)
    assert [item["key"] for item in problem["extra"]] == [name]


@pytest.mark.parametrize("value", ["1", "20261123", "2026-11-31T00:00:00Z"])
def test_a_subject_at_a_number_is_refused_not_answered_for_1970(
    client: Client, as_user: AsUser, auditor: Headers, value: str
) -> None:
    consent(client, as_user(ALICE), "marketing", True)
    ref = ref_of(client, as_user(ALICE))
    problem = assert_problem(
        client.get(f"/v1/audit/subjects/{ref}", headers=auditor, params={"at": value}), 400
    )
    assert [item["key"] for item in problem["extra"]] == ["at"]
    lower = get(client, f"/subjects/{ref}", auditor, at="2026-11-23t10:30:00z")
    assert lower["as_of"] == "2026-11-23T10:30:00Z"


@pytest.mark.parametrize("path", ["/consent-events", "/decisions", "/complaints", "/export"])
@pytest.mark.parametrize("name", ["from", "to"])
def test_a_bad_time_is_named_as_the_client_wrote_it(
    client: Client, auditor: Headers, path: str, name: str
) -> None:
    """Regression: Litestar named the parameter after the handler's argument (`start`, `end`)."""
    problem = assert_problem(client.get(f"/v1/audit{path}", headers=auditor, params={name: "garbage"}), 400)
    assert [item["key"] for item in problem["extra"]] == [name]
