"""Preference center, consent half: `PUT /v1/me/consents/{purpose}`, signed receipts verified with
an independent JOSE library, `GET /v1/me/consents/history`, bad input and concurrent changes."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import msgspec
import pytest
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet
from litestar import Litestar
from litestar.testing import TestClient
from support import assert_problem

from gateway.runtime import Runtime
from gateway.services.preferences import stored_answer
from gateway.signing import SignedParts
from storage import ledger

Client = TestClient[Litestar]
Headers = dict[str, str]
AsUser = Callable[[str], Headers]

ALICE = "alice.wong+test@example.com"
BOB = "+8613812345678"
NOTICE = "privacy-notice-2026-11"
DPV = {
    "marketing": "dpv:DirectMarketing",
    "personalization": "dpv:PersonalisedAdvertising",
    "location": "dpv:ServicePersonalisation",
}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# joserfc (rightly, per RFC 9864) warns that the polymorphic `EdDSA` name is deprecated; the
# spec fixes `EdDSA`, and pytest turns warnings into errors, so tolerate exactly that one.
jose_eddsa = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")


# -- helpers ----------------------------------------------------------------------------------


def events(runtime: Runtime) -> list[ledger.LedgerEvent]:
    return list(ledger.events(runtime.store.data.reader()))


def put_consent(
    client: Client, headers: Headers, purpose: str, granted: bool, notice: str = NOTICE
) -> dict[str, Any]:
    response = client.put(
        f"/v1/me/consents/{purpose}", headers=headers, json={"granted": granted, "notice_version": notice}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def snapshot(client: Client, runtime: Runtime, headers: Headers) -> tuple[Any, ...]:
    return (
        client.get("/v1/me/export", headers=headers).json(),
        len(events(runtime)),
        ledger.verify(runtime.store.data.reader()).head_hash,
    )


def key_set(client: Client) -> KeySet:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return KeySet.import_key_set(response.json())


def verified_payload(token: str, keys: KeySet) -> dict[str, Any]:
    header = jws.extract_compact(token.encode()).protected
    assert header["alg"] == "EdDSA"
    assert header["kid"] in {k.kid for k in keys.keys}
    verified = jws.deserialize_compact(token, keys, algorithms=["EdDSA"])
    payload: dict[str, Any] = json.loads(verified.payload)
    return payload


# -- the receipt --------------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", list(DPV))
def test_grant_answers_with_a_complete_receipt(
    client: Client, runtime: Runtime, as_user: AsUser, purpose: str
) -> None:
    headers = as_user(ALICE)
    ref = client.get("/v1/me/preferences", headers=headers).json()["subject_ref"]

    answer = put_consent(client, headers, purpose, True)

    assert set(answer) == {"receipt", "jws"}
    receipt = answer["receipt"]
    assert UUID.match(receipt["receipt_id"])
    assert receipt["timestamp"] == "2026-11-23T10:00:00Z"
    assert receipt["jurisdiction"] == runtime.settings.jurisdiction == "CN"
    assert receipt["collection_method"] == "preference_center"
    assert receipt["subject_ref"] == ref
    assert receipt["controller"] == {"name": runtime.settings.controller}
    assert receipt["purpose"]["id"] == purpose
    assert receipt["purpose"]["dpv_category"] == DPV[purpose]
    assert receipt["purpose"]["description"]
    assert receipt["consent_type"] == "explicit"
    assert receipt["notice_version"] == NOTICE
    assert receipt["granted"] is True
    assert receipt["state"] == "given"
    assert ALICE not in json.dumps(answer)
    [event] = events(runtime)
    assert receipt["ledger_seq"] == event.seq
    assert (event.kind, event.purpose, event.notice_version) == ("consent.given", purpose, NOTICE)


@jose_eddsa
def test_receipt_jws_verifies_with_an_independent_library(client: Client, as_user: AsUser) -> None:
    headers = as_user(ALICE)
    keys = key_set(client)
    assert keys.keys
    for jwk in keys.keys:
        assert jwk.kid
        assert "d" not in jwk.as_dict(private=False)

    given = put_consent(client, headers, "marketing", True)
    withdrawn = put_consent(client, headers, "marketing", False)

    for answer in (given, withdrawn):
        assert answer["jws"].count(".") == 2
        assert verified_payload(answer["jws"], keys) == answer["receipt"]
    assert verified_payload(withdrawn["jws"], keys)["state"] == "withdrawn"


@jose_eddsa
def test_a_tampered_receipt_does_not_verify(client: Client, as_user: AsUser) -> None:
    keys = key_set(client)
    token = put_consent(client, as_user(ALICE), "marketing", False)["jws"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["state"] = "given"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(f"{header}.{forged}.{signature}", keys, algorithms=["EdDSA"])


def test_withdrawal_is_as_easy_as_grant(
    client: Client, runtime: Runtime, as_user: AsUser, clock: Any
) -> None:
    headers = as_user(ALICE)
    put_consent(client, headers, "marketing", True, "notice-v1")
    clock.advance(hours=1)

    withdrawn = put_consent(client, headers, "marketing", False, "notice-v2")

    assert withdrawn["receipt"]["state"] == "withdrawn"
    assert withdrawn["receipt"]["granted"] is False
    assert withdrawn["receipt"]["timestamp"] == "2026-11-23T11:00:00Z"
    state = client.get("/v1/me/preferences", headers=headers).json()
    assert state["consents"]["marketing"] == {
        "granted": False,
        "updated_at": "2026-11-23T11:00:00Z",
        "notice_version": "notice-v2",
    }
    assert not any(on for topic, on in state["topics"].items() if topic != "transactional")
    assert [e.kind for e in events(runtime)] == ["consent.given", "consent.withdrawn"]


def test_granting_shows_in_preferences_with_time_and_notice(client: Client, as_user: AsUser) -> None:
    headers = as_user(ALICE)
    put_consent(client, headers, "personalization", True, "notice-2026.11+zh")

    consents = client.get("/v1/me/preferences", headers=headers).json()["consents"]
    assert consents == {
        "marketing": {"granted": False, "updated_at": None, "notice_version": None},
        "personalization": {
            "granted": True,
            "updated_at": "2026-11-23T10:00:00Z",
            "notice_version": "notice-2026.11+zh",
        },
        "location": {"granted": False, "updated_at": None, "notice_version": None},
    }


@jose_eddsa
def test_ledger_event_seals_the_receipt_once_and_gives_back_the_same_signed_answer(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    response = client.put(
        "/v1/me/consents/location", headers=as_user(ALICE), json={"granted": True, "notice_version": NOTICE}
    )
    assert response.status_code == 200, response.text
    answer = response.json()

    [event] = events(runtime)
    key = runtime.store.directory.resolve(answer["receipt"]["subject_ref"])
    assert key is not None
    opened = event.open_body(key)
    assert opened is not None
    assert event.body is not None
    assert b"receipt" not in event.body
    assert ledger.verify(runtime.store.data.reader()).ok
    # Stored compactly: the signed receipt bytes once, the JWS's signature segment, and its header
    # as the key id it is made of.
    _, payload, signature = answer["jws"].split(".")
    kid = runtime.signer.kid
    assert json.loads(opened) == {"kid": kid, "document": answer["receipt"], "signature": signature}
    assert payload.encode() not in opened
    assert opened.count(b'"receipt_id"') == 1
    assert len(opened) < 800 < len(response.content)  # about 750 B, against 1,500 B for the answer
    # Read back: the very answer the PUT gave, whose JWS still verifies against the published keys.
    rebuilt = stored_answer(opened)
    assert rebuilt.jws == answer["jws"]
    assert msgspec.json.encode(rebuilt) == response.content
    verified = jws.deserialize_compact(rebuilt.jws, key_set(client), algorithms=["EdDSA"])
    assert verified.payload == bytes(msgspec.json.decode(opened, type=SignedParts).document)


def test_a_receipt_signed_before_granted_was_added_reads_back_as_signed(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    answer = put_consent(client, as_user(ALICE), "marketing", True)
    [event] = events(runtime)
    key = runtime.store.directory.resolve(answer["receipt"]["subject_ref"])
    assert key is not None
    opened = event.open_body(key)
    assert opened is not None
    stored = msgspec.json.decode(opened, type=SignedParts)
    document = json.loads(bytes(stored.document))
    del document["granted"]  # as the receipts of earlier versions were signed
    old = msgspec.structs.replace(stored, document=msgspec.Raw(json.dumps(document).encode()))

    rebuilt = stored_answer(msgspec.json.encode(old))

    assert json.loads(msgspec.json.encode(rebuilt.receipt)) == document
    assert rebuilt.receipt.state == "given"


# -- history ------------------------------------------------------------------------------------


def test_history_lists_each_change_oldest_first(
    client: Client, runtime: Runtime, as_user: AsUser, clock: Any
) -> None:
    headers = as_user(ALICE)
    steps = [
        ("marketing", True, "n1"),
        ("personalization", True, "n1"),
        ("marketing", False, "n1"),
        ("location", True, "n2"),
        ("marketing", True, "n2"),
    ]
    answers = []
    for purpose, granted, notice in steps:
        answers.append(put_consent(client, headers, purpose, granted, notice))
        client.patch("/v1/me/preferences", headers=headers, json={"locale": "zh-CN"})
        clock.advance(minutes=5)
    put_consent(client, as_user(BOB), "marketing", True)

    history = client.get("/v1/me/consents/history", headers=headers).json()

    assert len(history) == len(steps)
    assert [(h["purpose"], h["granted"], h["notice_version"]) for h in history] == steps
    assert [h["kind"] for h in history] == [
        "consent.given" if granted else "consent.withdrawn" for _, granted, _ in steps
    ]
    assert [h["receipt_id"] for h in history] == [a["receipt"]["receipt_id"] for a in answers]
    assert [h["seq"] for h in history] == [a["receipt"]["ledger_seq"] for a in answers]
    assert [h["seq"] for h in history] == sorted(h["seq"] for h in history)
    assert [h["at"] for h in history] == [f"2026-11-23T10:{5 * i:02d}:00Z" for i in range(len(steps))]
    assert {h["source"] for h in history} == {"preference_center"}
    assert ledger.verify(runtime.store.data.reader()).ok


def test_history_of_a_new_user_is_empty_and_writes_nothing(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    put_consent(client, as_user(BOB), "marketing", True)

    assert client.get("/v1/me/consents/history", headers=as_user(ALICE)).json() == []
    assert runtime.store.directory.status(runtime.store.pseudonyms.subject_ref(ALICE)) == "unknown"
    assert len(events(runtime)) == 1


# -- bad input ----------------------------------------------------------------------------------

BAD_BODIES: list[tuple[Any, str]] = [
    ({"granted": "false", "notice_version": NOTICE}, "granted"),
    ({"granted": "true", "notice_version": NOTICE}, "granted"),
    ({"granted": 0, "notice_version": NOTICE}, "granted"),
    ({"granted": 1, "notice_version": NOTICE}, "granted"),
    ({"granted": None, "notice_version": NOTICE}, "granted"),
    ({"granted": [True], "notice_version": NOTICE}, "granted"),
    ({"granted": {"value": True}, "notice_version": NOTICE}, "granted"),
    ({"notice_version": NOTICE}, "granted"),
    ({"granted": True}, "notice_version"),
    ({"granted": True, "notice_version": ""}, "notice_version"),
    ({"granted": True, "notice_version": "v" * 65}, "notice_version"),
    ({"granted": True, "notice_version": "v 1"}, "notice_version"),
    ({"granted": True, "notice_version": "<script>"}, "notice_version"),
    ({"granted": True, "notice_version": 1}, "notice_version"),
    ({"granted": True, "notice_version": NOTICE, "purpose": "location"}, "purpose"),
    ({"granted": True, "notice_version": NOTICE, "subject_ref": "sub_x"}, "subject_ref"),
    ([True, NOTICE], "body"),
    ("granted", "body"),
]


def test_bad_consent_bodies_are_refused_naming_the_field(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    headers = as_user(ALICE)
    put_consent(client, headers, "marketing", True)
    before = snapshot(client, runtime, headers)

    for body, field in BAD_BODIES:
        for purpose in ("marketing", "location"):
            response = client.put(f"/v1/me/consents/{purpose}", headers=headers, json=body)
            assert response.status_code == 400, (body, response.text)
            assert_problem(response, 400, field)

    assert snapshot(client, runtime, headers) == before


def test_string_false_never_grants_for_a_new_user(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    for granted in ("false", "true", 0, 1, None):
        response = client.put(
            "/v1/me/consents/marketing",
            headers=as_user(BOB),
            json={"granted": granted, "notice_version": NOTICE},
        )
        assert_problem(response, 400, "granted")

    assert runtime.store.directory.status(runtime.store.pseudonyms.subject_ref(BOB)) == "unknown"
    assert events(runtime) == []


def test_duplicated_granted_key_is_refused(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    headers = {**as_user(ALICE), "Content-Type": "application/json"}
    raw = b'{"granted": false, "granted": true, "notice_version": "n1"}'

    response = client.put("/v1/me/consents/marketing", headers=headers, content=raw)

    assert_problem(response, 400, "granted")
    assert events(runtime) == []


UNKNOWN_PURPOSES = [
    "spam",
    "Marketing",
    "MARKETING",
    "transactional",
    "promotions",
    "marketing ",
    "location.x",
]


def test_unknown_purpose_is_refused_naming_it(client: Client, runtime: Runtime, as_user: AsUser) -> None:
    headers = as_user(ALICE)
    put_consent(client, headers, "marketing", False)
    before = snapshot(client, runtime, headers)

    for purpose in UNKNOWN_PURPOSES:
        response = client.put(
            f"/v1/me/consents/{purpose}", headers=headers, json={"granted": True, "notice_version": NOTICE}
        )
        assert response.status_code == 400, (purpose, response.text)
        assert_problem(response, 400, "purpose")

    assert snapshot(client, runtime, headers) == before


def test_consent_needs_put(client: Client, as_user: AsUser) -> None:
    headers = as_user(ALICE)
    body = {"granted": True, "notice_version": NOTICE}
    assert client.post("/v1/me/consents/marketing", headers=headers, json=body).status_code == 405
    assert client.patch("/v1/me/consents/marketing", headers=headers, json=body).status_code == 405
    assert (
        client.get("/v1/me/preferences", headers=headers).json()["consents"]["marketing"]["granted"] is False
    )


# -- concurrency --------------------------------------------------------------------------------


def test_twenty_simultaneous_consent_changes_over_asgi_leave_one_event_each(
    app: Litestar, client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    """httpx.AsyncClient on the app's ASGI interface, its lifespan already run by `client`."""
    headers = as_user(ALICE)
    purposes = ["marketing", "personalization", "location", "marketing", "personalization"] * 4
    changes = [(purpose, n % 2 == 0) for n, purpose in enumerate(purposes)]

    async def fire() -> list[httpx.Response]:
        # Litestar annotates `__call__` with its own scope TypedDicts (keys it adds itself), httpx
        # with plain ASGI mappings: the two libraries' types disagree, not the app (encode/httpx#3111).
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await asyncio.gather(
                *(
                    http.put(
                        f"/v1/me/consents/{purpose}",
                        headers=headers,
                        json={"granted": granted, "notice_version": f"n{n}"},
                    )
                    for n, (purpose, granted) in enumerate(changes)
                )
            )

    responses = asyncio.run(fire())

    assert [r.status_code for r in responses] == [200] * 20
    receipts = [r.json()["receipt"] for r in responses]
    assert len({r["receipt_id"] for r in receipts}) == 20
    assert sorted(r["ledger_seq"] for r in receipts) == list(range(1, 21))
    history = client.get("/v1/me/consents/history", headers=headers).json()
    assert len(history) == 20
    by_seq = {r["ledger_seq"]: r for r in receipts}
    for entry in history:
        receipt = by_seq[entry["seq"]]
        assert entry["receipt_id"] == receipt["receipt_id"]
        assert entry["purpose"] == receipt["purpose"]["id"]
        assert entry["granted"] == (receipt["state"] == "given")
    last = {entry["purpose"]: entry for entry in history}
    consents = client.get("/v1/me/preferences", headers=headers).json()["consents"]
    for purpose, entry in last.items():
        assert consents[purpose]["granted"] == entry["granted"]
        assert consents[purpose]["notice_version"] == entry["notice_version"]
    check = ledger.verify(runtime.store.data.reader())
    assert (check.ok, check.events) == (True, 20)


def test_simultaneous_grant_and_withdraw_from_threads_stay_consistent(
    client: Client, runtime: Runtime, as_user: AsUser
) -> None:
    users = [ALICE, BOB]
    jobs = [(users[n % 2], n % 3 != 0, f"n{n}") for n in range(20)]

    def send(job: tuple[str, bool, str]) -> dict[str, Any]:
        user, granted, notice = job
        return put_consent(client, as_user(user), "marketing", granted, notice)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, jobs))

    assert sorted(a["receipt"]["ledger_seq"] for a in answers) == list(range(1, 21))
    for user in users:
        headers = as_user(user)
        history = client.get("/v1/me/consents/history", headers=headers).json()
        assert len(history) == 10
        current = client.get("/v1/me/preferences", headers=headers).json()["consents"]["marketing"]
        assert current["granted"] == history[-1]["granted"]
        assert current["notice_version"] == history[-1]["notice_version"]
    assert ledger.verify(runtime.store.data.reader()).ok
