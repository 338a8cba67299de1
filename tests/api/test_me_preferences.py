"""Preference center, preferences half: `GET`/`PATCH /v1/me/preferences`, admin policy limits,
topic visibility, the ledger trail of every change, concurrency, and who may call `/v1/me`."""

from __future__ import annotations

import json
import threading
import zoneinfo
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.settings import Settings
from policies.settings import PolicySettings
from storage import ledger

Client = TestClient[Litestar]
Headers = dict[str, str]
AsUser = Callable[[str], Headers]
AsKey = Callable[..., Headers]

ALICE = "alice.wong+test@example.com"
BOB = "+8613812345678"
NOTICE = "privacy-notice-2026-11"
MARKETING_TOPICS = (
    "promotions",
    "flash_sales",
    "cart_reminders",
    "recommendations",
    "nearby_offers",
    "product_tips",
    "feedback_requests",
)
TOPIC_NEEDS: dict[str, set[str]] = {
    "transactional": set(),
    "promotions": {"marketing"},
    "flash_sales": {"marketing"},
    "cart_reminders": {"marketing", "personalization"},
    "recommendations": {"marketing", "personalization"},
    "nearby_offers": {"marketing", "location"},
    "product_tips": {"marketing"},
    "feedback_requests": {"marketing"},
}


# -- helpers ----------------------------------------------------------------------------------


def events(runtime: Runtime) -> list[ledger.LedgerEvent]:
    return list(ledger.events(runtime.store.data.reader()))


def row_counts(runtime: Runtime) -> dict[str, int]:
    conn = runtime.store.data.reader()
    return {
        table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
        for table in ("preferences", "consents", "devices", "locations", "ledger")
    }


def subject_ref(runtime: Runtime, user_id: str) -> str:
    return runtime.store.pseudonyms.subject_ref(user_id)


def grant(client: Client, headers: Headers, purpose: str, granted: bool = True) -> dict[str, Any]:
    response = client.put(
        f"/v1/me/consents/{purpose}", headers=headers, json={"granted": granted, "notice_version": NOTICE}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def patch(client: Client, headers: Headers, body: dict[str, Any]) -> dict[str, Any]:
    response = client.patch("/v1/me/preferences", headers=headers, json=body)
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


def put_policy(client: Client, as_key: AsKey, **changes: Any) -> None:
    body = msgspec.to_builtins(msgspec.structs.replace(PolicySettings(), **changes))
    response = client.put("/v1/admin/policy", headers=as_key("admin"), json=body)
    assert response.status_code == 200, response.text


def snapshot(client: Client, runtime: Runtime, headers: Headers) -> tuple[Any, ...]:
    return (
        client.get("/v1/me/export", headers=headers).json(),
        row_counts(runtime),
        ledger.verify(runtime.store.data.reader()).head_hash,
    )


def defaults(ref: str, timezone: str = "UTC") -> dict[str, Any]:
    return {
        "subject_ref": ref,
        "timezone": timezone,
        "locale": None,
        "consents": {
            p: {"granted": False, "updated_at": None, "notice_version": None}
            for p in ("marketing", "personalization", "location")
        },
        "topics": {"transactional": True, **dict.fromkeys(MARKETING_TOPICS, False)},
        "quiet_hours": {"start": "21:00", "end": "08:00"},
        "frequency": {"max_per_week": 3},
        "paused_until": {},
    }


# -- first contact ----------------------------------------------------------------------------


def test_first_get_returns_spec_defaults(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    response = client.get("/v1/me/preferences", headers=as_user(ALICE))

    assert response.status_code == 200
    assert response.json() == defaults(subject_ref(runtime, ALICE))


def test_first_get_writes_nothing(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    before = row_counts(runtime)
    for _ in range(3):
        assert client.get("/v1/me/preferences", headers=as_user(ALICE)).status_code == 200

    assert runtime.store.directory.status(subject_ref(runtime, ALICE)) == "unknown"
    assert row_counts(runtime) == before == dict.fromkeys(before, 0)
    assert events(runtime) == []


def test_subject_ref_is_the_spec_pseudonym_and_never_the_user_id(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    body = client.get("/v1/me/preferences", headers=as_user(ALICE)).json()

    assert body["subject_ref"].startswith("sub_")
    assert len(body["subject_ref"]) == 56
    assert body["subject_ref"] == body["subject_ref"].lower()
    assert ALICE not in json.dumps(body)
    assert client.get("/v1/me/preferences", headers=as_user(BOB)).json()["subject_ref"] != body["subject_ref"]


class TestConfiguredDefaultZone:
    @pytest.fixture
    def settings(self, data_dir: Path) -> Settings:
        return Settings(data_dir=data_dir, worker_enabled=False, timezone="Asia/Shanghai")

    def test_default_timezone_is_the_gateways_zone(
        self, client: Client, runtime: Runtime, as_user: AsUser
    ) -> None:
        body = client.get("/v1/me/preferences", headers=as_user(ALICE)).json()
        assert body == defaults(subject_ref(runtime, ALICE), timezone="Asia/Shanghai")


# -- changing preferences -----------------------------------------------------------------------


PATCHES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"timezone": "Asia/Shanghai"}, {"timezone": "Asia/Shanghai"}),
    ({"timezone": "America/Argentina/Buenos_Aires"}, {"timezone": "America/Argentina/Buenos_Aires"}),
    ({"locale": "zh-CN"}, {"locale": "zh-CN"}),
    ({"locale": "en"}, {"locale": "en"}),
    (
        {"quiet_hours": {"start": "22:30", "end": "07:15"}},
        {"quiet_hours": {"start": "22:30", "end": "07:15"}},
    ),
    (
        {"quiet_hours": {"start": "12:00", "end": "14:00"}},
        {"quiet_hours": {"start": "12:00", "end": "14:00"}},
    ),
    (
        {"quiet_hours": {"start": "00:00", "end": "23:59"}},
        {"quiet_hours": {"start": "00:00", "end": "23:59"}},
    ),
    ({"frequency": {"max_per_week": 0}}, {"frequency": {"max_per_week": 0}}),
    ({"frequency": {"max_per_week": 3}}, {"frequency": {"max_per_week": 3}}),
    ({"topics": {"transactional": True}}, {}),
]


def test_each_patch_changes_its_field_and_records_one_event(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    for n, (change, expect) in enumerate(PATCHES):
        user = f"patch.user{n}+test@example.com"
        headers = as_user(user)
        ref = subject_ref(runtime, user)

        answered = patch(client, headers, change)

        wanted = defaults(ref) | expect
        assert answered == wanted, change
        assert client.get("/v1/me/preferences", headers=headers).json() == wanted, change
        key = runtime.store.directory.resolve(ref)
        assert key is not None
        [event] = [e for e in events(runtime) if e.subject_id == key.subject_id]
        assert (event.kind, event.actor, event.source) == ("preferences.changed", "user", "preference_center")
        opened = event.open_body(key)
        assert opened is not None
        assert json.loads(opened) == change
    assert len(events(runtime)) == len(PATCHES)
    assert ledger.verify(runtime.store.data.reader()).ok


def test_empty_patch_records_nothing(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    headers = as_user(ALICE)

    response = client.patch("/v1/me/preferences", headers=headers, json={})

    assert response.status_code in (200, 400), response.text
    assert events(runtime) == []
    assert runtime.store.directory.status(subject_ref(runtime, ALICE)) == "unknown"


def test_a_patch_that_changes_nothing_records_nothing(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    headers = as_user(ALICE)
    change: dict[str, Any] = {"timezone": "Asia/Shanghai", "topics": {"promotions": False}}
    assert client.patch("/v1/me/preferences", headers=headers, json=change).status_code == 200
    recorded = events(runtime)

    unchanged: list[dict[str, Any]] = [
        change, {"topics": {}}, {"timezone": "Asia/Shanghai"}, {"topics": {"promotions": False}}
    ]  # fmt: skip
    for same in unchanged:
        response = client.patch("/v1/me/preferences", headers=headers, json=same)
        assert response.status_code == 200, response.text
        assert response.json()["timezone"] == "Asia/Shanghai"

    assert events(runtime) == recorded
    # Pinning a topic on that was on by default is a choice, kept and recorded.
    assert (
        client.patch(
            "/v1/me/preferences", headers=headers, json={"topics": {"flash_sales": True}}
        ).status_code
        == 200
    )
    assert len(events(runtime)) == len(recorded) + 1


def test_patch_leaves_fields_it_does_not_name(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    headers = as_user(ALICE)
    patch(client, headers, {"timezone": "Europe/Berlin", "locale": "zh-CN"})
    patch(client, headers, {"quiet_hours": {"start": "23:00", "end": "06:30"}})
    patch(client, headers, {"frequency": {"max_per_week": 1}})

    state = client.get("/v1/me/preferences", headers=headers).json()
    assert state["timezone"] == "Europe/Berlin"
    assert state["locale"] == "zh-CN"
    assert state["quiet_hours"] == {"start": "23:00", "end": "06:30"}
    assert state["frequency"] == {"max_per_week": 1}
    assert [e.kind for e in events(runtime)] == ["preferences.changed"] * 3


def test_topic_patches_merge(client: Client, as_user: AsUser) -> None:
    headers = as_user(ALICE)
    grant(client, headers, "marketing")
    patch(client, headers, {"topics": {"promotions": False}})
    patch(client, headers, {"topics": {"flash_sales": False}})

    topics = client.get("/v1/me/preferences", headers=headers).json()["topics"]
    assert topics["promotions"] is False
    assert topics["flash_sales"] is False
    assert topics["product_tips"] is True


def test_preference_changes_are_not_consent_history(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    headers = as_user(ALICE)
    patch(client, headers, {"locale": "zh-CN"})
    grant(client, headers, "marketing")
    patch(client, headers, {"topics": {"promotions": False}})

    history = client.get("/v1/me/consents/history", headers=headers).json()
    assert [h["kind"] for h in history] == ["consent.given"]
    assert [e.kind for e in events(runtime)] == [
        "preferences.changed",
        "consent.given",
        "preferences.changed",
    ]
    assert ledger.verify(runtime.store.data.reader()).ok


# -- topics and purposes ----------------------------------------------------------------------


GRANT_SETS: list[set[str]] = [
    set(),
    {"marketing"},
    {"personalization"},
    {"location"},
    {"marketing", "personalization"},
    {"marketing", "location"},
    {"personalization", "location"},
    {"marketing", "personalization", "location"},
]


def test_topic_is_on_exactly_when_its_purposes_are_granted(client: Client, as_user: AsUser) -> None:
    for n, granted in enumerate(GRANT_SETS):
        headers = as_user(f"topics.user{n}+test@example.com")
        for purpose in sorted(granted):
            grant(client, headers, purpose)

        state = client.get("/v1/me/preferences", headers=headers).json()
        assert state["topics"] == {topic: needs <= granted for topic, needs in TOPIC_NEEDS.items()}, granted
        assert {p for p, c in state["consents"].items() if c["granted"]} == granted


def test_explicit_off_survives_granting_withdrawing_and_regranting(client: Client, as_user: AsUser) -> None:
    headers = as_user(ALICE)
    patch(client, headers, {"topics": {"promotions": False, "cart_reminders": False}})

    grant(client, headers, "marketing")
    grant(client, headers, "personalization")
    topics = client.get("/v1/me/preferences", headers=headers).json()["topics"]
    assert topics["promotions"] is False
    assert topics["cart_reminders"] is False
    assert topics["flash_sales"] is True
    assert topics["recommendations"] is True

    grant(client, headers, "marketing", granted=False)
    topics = client.get("/v1/me/preferences", headers=headers).json()["topics"]
    assert topics == {"transactional": True, **dict.fromkeys(MARKETING_TOPICS, False)}

    grant(client, headers, "marketing")
    topics = client.get("/v1/me/preferences", headers=headers).json()["topics"]
    assert topics["promotions"] is False
    assert topics["cart_reminders"] is False
    assert topics["flash_sales"] is True

    assert patch(client, headers, {"topics": {"promotions": True}})["topics"]["promotions"] is True


def test_switching_a_topic_on_does_not_bypass_missing_consent(client: Client, as_user: AsUser) -> None:
    headers = as_user(ALICE)
    state = patch(client, headers, {"topics": dict.fromkeys(MARKETING_TOPICS, True)})

    assert state["topics"] == {"transactional": True, **dict.fromkeys(MARKETING_TOPICS, False)}
    grant(client, headers, "marketing")
    topics = client.get("/v1/me/preferences", headers=headers).json()["topics"]
    assert topics["promotions"] is True
    assert topics["nearby_offers"] is False


# -- admin limits -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("start", "1\u0663:00"), ("end", "0\u0668:00"), ("end", "0\uff18:0\uff10")],
    ids=["arabic-indic", "arabic-indic-end", "full-width"],
)
def test_quiet_hours_in_other_scripts_digits_are_refused(
    client: Client, runtime: Runtime, as_user: AsUser, field: str, value: str
) -> None:
    """`\\d` took any script's digits: "1٣:00" was kept and echoed as given, and the page's time
    input, which takes ASCII only, then showed it empty and sent it back blank."""
    headers = as_user(ALICE)
    patch(client, headers, {"locale": "zh-CN"})
    before = snapshot(client, runtime, headers)
    window = {"start": "22:00", "end": "07:00", field: value}
    refused = client.patch("/v1/me/preferences", headers=headers, json={"quiet_hours": window})
    assert_problem(refused, 400, f"quiet_hours.{field}")
    assert snapshot(client, runtime, headers) == before


def test_policy_quiet_times_in_other_scripts_digits_are_refused(client: Client, as_key: AsKey) -> None:
    admin = as_key("admin")
    before = client.get("/v1/admin/policy", headers=admin).json()
    refused = client.put("/v1/admin/policy", headers=admin, json={"quiet_start": "1\u0663:00"})
    assert_problem(refused, 400, "quiet_start")
    assert client.get("/v1/admin/policy", headers=admin).json() == before


def test_quiet_hours_shorter_than_the_admin_minimum_are_refused(
    client: Client, runtime: Runtime, as_user: AsUser, as_key: AsKey
) -> None:
    put_policy(client, as_key, min_quiet_minutes=600)
    headers = as_user(ALICE)
    patch(client, headers, {"locale": "zh-CN"})
    before = snapshot(client, runtime, headers)

    refused = client.patch(
        "/v1/me/preferences", headers=headers, json={"quiet_hours": {"start": "22:00", "end": "06:00"}}
    )

    assert_problem(refused, 400, "quiet_hours")
    assert snapshot(client, runtime, headers) == before
    exact = patch(client, headers, {"quiet_hours": {"start": "22:00", "end": "08:00"}})
    assert exact["quiet_hours"] == {"start": "22:00", "end": "08:00"}
    wider = patch(client, headers, {"quiet_hours": {"start": "19:30", "end": "09:00"}})
    assert wider["quiet_hours"] == {"start": "19:30", "end": "09:00"}


def test_quiet_hours_minimum_refusal_for_a_new_user_creates_no_subject(
    client: Client, runtime: Runtime, as_user: AsUser, as_key: AsKey
) -> None:
    put_policy(client, as_key, min_quiet_minutes=600)
    before = row_counts(runtime)

    refused = client.patch(
        "/v1/me/preferences", headers=as_user(BOB), json={"quiet_hours": {"start": "08:00", "end": "09:00"}}
    )

    assert_problem(refused, 400, "quiet_hours")
    assert runtime.store.directory.status(subject_ref(runtime, BOB)) == "unknown"
    assert row_counts(runtime) == before


def test_a_window_saved_before_the_minimum_shows_the_window_in_force(
    client: Client, as_user: AsUser, as_key: AsKey
) -> None:
    """Pushes are held to a longer window once an admin's minimum makes a saved one too short; the
    preferences showed the saved one, so the person was told quiet hours ended at 06:00 and held
    to a later end. (It is lengthened from its start: every minute the person chose stays quiet.)"""
    headers = as_user(ALICE)
    patch(client, headers, {"quiet_hours": {"start": "23:00", "end": "06:00"}})
    put_policy(client, as_key, min_quiet_minutes=600)

    shown = client.get("/v1/me/preferences", headers=headers).json()["quiet_hours"]
    assert shown == {"start": "23:00", "end": "09:00"}  # ten hours from its start


def test_weekly_cap_may_not_exceed_the_system_cap(
    client: Client, runtime: Runtime, as_user: AsUser, as_key: AsKey
) -> None:
    headers = as_user(ALICE)
    patch(client, headers, {"frequency": {"max_per_week": 3}})
    put_policy(client, as_key, max_per_week=2)

    assert client.get("/v1/me/preferences", headers=headers).json()["frequency"] == {"max_per_week": 2}
    assert client.get("/v1/me/preferences", headers=as_user(BOB)).json()["frequency"] == {"max_per_week": 2}
    before = snapshot(client, runtime, headers)
    refused = client.patch("/v1/me/preferences", headers=headers, json={"frequency": {"max_per_week": 3}})
    assert_problem(refused, 400, "frequency.max_per_week")
    assert snapshot(client, runtime, headers) == before

    assert patch(client, headers, {"frequency": {"max_per_week": 2}})["frequency"] == {"max_per_week": 2}
    assert patch(client, headers, {"frequency": {"max_per_week": 0}})["frequency"] == {"max_per_week": 0}


def test_a_system_cap_raised_over_3_is_read_and_may_be_chosen(
    client: Client, as_user: AsUser, as_key: AsKey
) -> None:
    """The user's cap was held to 0-3 on the wire whatever the system cap: with an admin's 5, the
    state read back answered 5, which its own schema (and a PATCH of it) refused."""
    headers = as_user(ALICE)
    put_policy(client, as_key, max_per_week=5)
    state = client.get("/v1/me/preferences", headers=headers).json()
    assert state["frequency"] == {"max_per_week": 5}

    assert patch(client, headers, {"frequency": state["frequency"]})["frequency"] == {"max_per_week": 5}
    assert patch(client, headers, {"frequency": {"max_per_week": 4}})["frequency"] == {"max_per_week": 4}
    refused = client.patch("/v1/me/preferences", headers=headers, json={"frequency": {"max_per_week": 6}})
    assert_problem(refused, 400, "frequency.max_per_week")


# -- bad input ----------------------------------------------------------------------------------

# (body, field the 400 must name), grouped by the field under attack.
BAD_PATCHES: dict[str, list[tuple[dict[str, Any], str]]] = {
    "timezone": [
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"timezone": "utc"}, "timezone"),
        ({"timezone": "/etc/localtime"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"timezone": "zone.tab"}, "timezone"),
        ({"timezone": "Europe/Paris\u0000"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"timezone": "A" * 65}, "timezone"),
        ({"timezone": 8}, "timezone"),
        ({"timezone": None}, "timezone"),
    ],
    "locale": [
        ({"locale": "fr"}, "locale"),
        ({"locale": "zh-cn"}, "locale"),
        ({"locale": ["en"]}, "locale"),
    ],
    "topics": [
        ({"topics": {"spam": True}}, "topics"),
        ({"topics": {"promotions": "false"}}, "topics"),
        ({"topics": {"promotions": 0}}, "topics"),
        ({"topics": {"promotions": None}}, "topics"),
        ({"topics": {"transactional": False}}, "topics.transactional"),
        ({"topics": ["promotions"]}, "topics"),
    ],
    "quiet_hours": [
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "21:00", "end": "24:00"}}, "quiet_hours.end"),
        ({"quiet_hours": {"start": "9:00", "end": "10:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "21:60", "end": "08:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "21:00"}}, "end"),
        ({"quiet_hours": {"start": "21:00", "end": "08:00", "tz": "UTC"}}, "tz"),
        ({"quiet_hours": "21:00-08:00"}, "quiet_hours"),
    ],
    "frequency": [
        ({"frequency": {"max_per_week": 4}}, "frequency.max_per_week"),
        ({"frequency": {"max_per_week": -1}}, "frequency.max_per_week"),
        ({"frequency": {"max_per_week": "2"}}, "frequency.max_per_week"),
        ({"frequency": {"max_per_week": 2.5}}, "frequency.max_per_week"),
        ({"frequency": {"max_per_week": True}}, "frequency.max_per_week"),
        ({"frequency": {"max_per_day": 1}}, "max_per_day"),
    ],
    "unknown-fields": [
        ({"subject_ref": "sub_x"}, "subject_ref"),
        ({"consents": {"marketing": {"granted": True}}}, "consents"),
        ({"locale": "en", "nickname": "Ali"}, "nickname"),
    ],
}


@pytest.mark.parametrize("group", list(BAD_PATCHES))
def test_bad_patch_is_refused_naming_the_field_and_changes_nothing(
    client: Client, runtime: Runtime, as_user: AsUser, group: str
) -> None:
    headers = as_user(ALICE)
    grant(client, headers, "marketing")
    patch(client, headers, {"timezone": "Asia/Shanghai", "topics": {"promotions": False}})
    before = snapshot(client, runtime, headers)

    for body, field in BAD_PATCHES[group]:
        response = client.patch("/v1/me/preferences", headers=headers, json=body)
        assert response.status_code == 400, (body, response.text)
        assert_problem(response, 400, field)
        assert snapshot(client, runtime, headers) == before, body


@pytest.mark.parametrize("zone", ["America", "Etc"])
def test_zone_directory_name_is_a_400_not_a_500(
    client: Client, runtime: Runtime, as_user: AsUser, zone: str
) -> None:
    """Regression: zoneinfo raised IsADirectoryError for `America`/`Etc` and PATCH answered 500."""
    response = client.patch("/v1/me/preferences", headers=as_user(ALICE), json={"timezone": zone})

    assert_problem(response, 400, "timezone")
    assert row_counts(runtime)["ledger"] == 0


def _loads_locally(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except Exception:
        return False
    return True


# Zone files that load but are not IANA zone names. Since zones come from the tzdata package alone
# (gateway.timezones), the host's `localtime` and `posixrules` no longer load; `Factory` does.
NOT_IANA = [
    z for z in ("Factory", "posixrules", "localtime", "right/UTC", "posix/Asia/Shanghai") if _loads_locally(z)
]


@pytest.mark.parametrize("zone", NOT_IANA)
def test_zone_database_files_that_are_not_iana_names_are_refused(
    client: Client, runtime: Runtime, as_user: AsUser, zone: str
) -> None:
    """Regression: any file zoneinfo could load was accepted (`localtime` is the server's own zone)."""
    response = client.patch("/v1/me/preferences", headers=as_user(ALICE), json={"timezone": zone})

    assert_problem(response, 400, "timezone")
    assert row_counts(runtime)["ledger"] == 0


MALFORMED = [
    b"",
    b"null",
    b"[]",
    b'"timezone"',
    b"{",
    b'{"locale": "en",}',
    b"\xff\xfe",
    b'{"locale": "en"} {}',
]


def test_malformed_patch_body_is_a_400(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    headers = {**as_user(ALICE), "Content-Type": "application/json"}
    for raw in MALFORMED:
        response = client.patch("/v1/me/preferences", headers=headers, content=raw)
        assert response.status_code == 400, (raw, response.text)
        assert_problem(response, 400)

    assert row_counts(runtime) == dict.fromkeys(row_counts(runtime), 0)
    assert runtime.store.directory.status(subject_ref(runtime, ALICE)) == "unknown"


def test_unknown_topic_is_named_in_extra(client: Client, as_user: AsUser) -> None:
    """Regression: an unknown dict key was reported as extra key `body`."""
    response = client.patch("/v1/me/preferences", headers=as_user(ALICE), json={"topics": {"spam": True}})

    body = assert_problem(response, 400)
    assert [item["key"] for item in body["extra"]] == ["topics"]


@pytest.mark.parametrize("path", ["/v1/me/preferences", "/v1/me/devices"])
def test_body_over_the_size_limit_is_413_and_writes_nothing(
    client: Client, runtime: Runtime, as_user: AsUser, path: str
) -> None:
    assert runtime.settings.max_body_bytes == 64 * 1024
    headers = as_user(ALICE)
    grant(client, headers, "marketing")
    before = snapshot(client, runtime, headers)
    body = json.dumps({"locale": "en", "platform": "fcm", "token": "x" * (65 * 1024)}).encode()

    method = client.patch if path.endswith("preferences") else client.post
    response = method(path, headers={**headers, "Content-Type": "application/json"}, content=body)

    assert_problem(response, 413)
    assert snapshot(client, runtime, headers) == before


# -- concurrency --------------------------------------------------------------------------------


def test_concurrent_patches_for_one_user_all_land_with_one_event_each(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    headers = as_user(ALICE)
    grant(client, headers, "marketing")
    grant(client, headers, "personalization")
    grant(client, headers, "location")
    base = len(events(runtime))
    changes: list[dict[str, Any]] = [{"topics": {topic: False}} for topic in MARKETING_TOPICS]
    changes += [
        {"locale": "zh-CN"},
        {"quiet_hours": {"start": "22:00", "end": "07:00"}},
        {"frequency": {"max_per_week": 1}},
    ]
    # Each a change whatever order they land in: a patch that changes nothing records nothing.
    zones = ["Asia/Shanghai", "Europe/Paris", "America/Lima", "Africa/Cairo", "Asia/Tokyo", "Europe/Oslo"]
    zones += ["America/Denver", "Australia/Perth", "Asia/Dubai", "Europe/Rome", "Pacific/Fiji"]
    changes += [{"timezone": zone} for zone in zones[: 20 - len(changes)]]
    assert len(changes) == 20

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(
            pool.map(lambda c: client.patch("/v1/me/preferences", headers=headers, json=c), changes)
        )

    assert [r.status_code for r in statuses] == [200] * 20
    state = client.get("/v1/me/preferences", headers=headers).json()
    assert {t: on for t, on in state["topics"].items() if t in MARKETING_TOPICS} == dict.fromkeys(
        MARKETING_TOPICS, False
    )
    assert state["timezone"] in zones
    assert state["locale"] == "zh-CN"
    assert state["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    assert state["frequency"] == {"max_per_week": 1}
    new = events(runtime)[base:]
    assert len(new) == 20
    assert {e.kind for e in new} == {"preferences.changed"}
    check = ledger.verify(runtime.store.data.reader())
    assert check.ok
    assert check.events == base + 20


def test_concurrent_first_patches_create_one_subject(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    headers = as_user(BOB)
    changes = [{"topics": {topic: False}} for topic in MARKETING_TOPICS]

    with ThreadPoolExecutor(max_workers=len(changes)) as pool:
        responses = list(
            pool.map(lambda c: client.patch("/v1/me/preferences", headers=headers, json=c), changes)
        )

    assert {r.status_code for r in responses} == {200}
    assert len({e.subject_id for e in events(runtime)}) == 1
    assert row_counts(runtime)["preferences"] == 1
    grant(client, headers, "marketing")
    grant(client, headers, "personalization")
    grant(client, headers, "location")
    topics = client.get("/v1/me/preferences", headers=headers).json()["topics"]
    assert topics == {"transactional": True, **dict.fromkeys(MARKETING_TOPICS, False)}


# -- who may call /v1/me ------------------------------------------------------------------------

ME_ROUTES = [
    ("GET", "/v1/me/preferences", None),
    ("PATCH", "/v1/me/preferences", {"locale": "zh-CN"}),
    ("PUT", "/v1/me/consents/marketing", {"granted": True, "notice_version": NOTICE}),
    ("GET", "/v1/me/consents/history", None),
    ("POST", "/v1/me/devices", {"platform": "fcm", "token": "fcm-token-AUTHZ-0001"}),
    ("GET", "/v1/me/devices", None),
    ("DELETE", "/v1/me/devices/dev_0123456789abcdef01234567", None),
    ("PUT", "/v1/me/location", {"lat": 31.2, "lon": 121.4}),
    ("GET", "/v1/me/export", None),
    ("DELETE", "/v1/me", None),
]


def _bad_credentials(runtime: Runtime) -> dict[str, str | None]:
    secret = runtime.keys.jwt_dev_secret
    now = int(runtime.clock().timestamp())
    good = {"sub": ALICE, "aud": "consent-gateway", "iat": now, "exp": now + 600}
    return {
        "missing": None,
        "not-bearer": f"Basic {ALICE}",
        "empty-bearer": "Bearer ",
        "garbage": "Bearer not.a.jwt",
        "expired": "Bearer " + jwt.encode(good | {"exp": now - 3600}, secret, algorithm="HS256"),
        "wrong-audience": "Bearer " + jwt.encode(good | {"aud": "someone-else"}, secret, algorithm="HS256"),
        "no-exp": "Bearer " + jwt.encode({k: v for k, v in good.items() if k != "exp"}, secret, "HS256"),
        "wrong-secret": "Bearer " + jwt.encode(good, "x" * 40, algorithm="HS256"),
        "alg-none": "Bearer " + jwt.encode(good, "", algorithm="none"),
        "empty-sub": "Bearer " + jwt.encode(good | {"sub": ""}, secret, algorithm="HS256"),
        "long-sub": "Bearer " + jwt.encode(good | {"sub": "u" * 129}, secret, algorithm="HS256"),
        "unknown-api-key": "Bearer cgw_nokey_0000000000000000",
    }


def test_me_routes_refuse_missing_or_bad_credentials(client: Client, runtime: Runtime) -> None:
    for name, authorization in _bad_credentials(runtime).items():
        headers = {} if authorization is None else {"Authorization": authorization}
        for method, path, body in ME_ROUTES:
            response = client.request(method, path, headers=headers, json=body)
            assert response.status_code == 401, (name, method, path, response.text)
            assert_problem(response, 401, "Authorization")
            assert response.headers["www-authenticate"].startswith("Bearer")

    assert row_counts(runtime) == dict.fromkeys(row_counts(runtime), 0)
    assert runtime.store.directory.status(subject_ref(runtime, ALICE)) == "unknown"


def test_me_routes_refuse_api_keys(client: Client, runtime: Runtime, as_key: AsKey) -> None:
    for scope in ("admin", "audit:read", "pushes:write"):
        headers = as_key(scope)
        for method, path, body in ME_ROUTES:
            response = client.request(method, path, headers=headers, json=body)
            assert response.status_code == 403, (scope, method, path, response.text)
            assert_problem(response, 403)

    assert row_counts(runtime) == dict.fromkeys(row_counts(runtime), 0)


def test_token_with_an_unencodable_sub_is_a_401(client: Client, runtime: Runtime) -> None:
    """Regression: a lone surrogate in `sub` made pseudonymization raise UnicodeEncodeError (500)."""
    now = int(runtime.clock().timestamp())
    claims = {"sub": "alice\ud800", "aud": "consent-gateway", "iat": now, "exp": now + 600}
    token = jwt.encode(claims, runtime.keys.jwt_dev_secret, algorithm="HS256")

    response = client.get("/v1/me/preferences", headers={"Authorization": f"Bearer {token}"})

    assert_problem(response, 401, "Authorization")


class TickingClock:
    """A clock a microsecond later at every reading, behind a lock: orders readings strictly."""

    def __init__(self) -> None:
        self._now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self._now += timedelta(microseconds=1)
            return self._now


def test_consent_times_follow_the_ledgers_order_for_a_new_users_first_changes(settings: Settings) -> None:
    """Regression: the time was read before the subject was made, each request on its own
    thread, so concurrent first consents of a new user were written in another order than their
    times: the final state was dated before the events it followed."""
    app = create_app(settings, TickingClock())
    with TestClient(app) as client:
        runtime: Runtime = app.state.runtime
        headers = {"Authorization": f"Bearer {runtime.user_tokens.mint('new-user-ticks', runtime.clock())}"}
        bodies = [{"granted": i % 2 == 0, "notice_version": NOTICE} for i in range(16)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(
                pool.map(lambda b: client.put("/v1/me/consents/marketing", headers=headers, json=b), bodies)
            )
        assert {a.status_code for a in answers} == {200}
        stamps = [e.at for e in events(runtime)]
        assert len(stamps) == 16
        assert stamps == sorted(stamps)
