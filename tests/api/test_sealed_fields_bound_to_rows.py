"""A sealed field opens only in the row and column it was sealed for.

Every personal field is sealed under its subject's data key with associated data naming its
table, column and row (`storage.crypto.field_aad`). Within one subject the key is the same for
all their rows, so only that binding stops a ciphertext copied from one row to another (by
hand, by a bug, by someone with write access to the file) from opening there as if it were
that row's: one push's text shown as another's, one device's token used for another device.
Each case writes two real rows through the API, copies one row's ciphertext over the other's
with SQL, and reads it back through the repository the gateway reads with.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import apns_token, onboard

from gateway.runtime import Runtime
from storage.crypto import DecryptionError
from storage.directory import SubjectKey
from storage.repositories import complaints, devices, pushes

Client = TestClient[Litestar]
USER = "sealed-rows-user"


def _key(runtime: Runtime) -> SubjectKey:
    key = runtime.store.directory.resolve(runtime.store.pseudonyms.subject_ref(USER))
    assert key is not None
    return key


def _copy(runtime: Runtime, table: str, column: str, id_column: str, source: str, target: str) -> None:
    taken = f"SELECT {column} FROM {table} WHERE {id_column} = ?"  # noqa: S608
    sql = f"UPDATE {table} SET {column} = ({taken}) WHERE {id_column} = ?"  # noqa: S608
    runtime.store.data.writer.run_sync(lambda conn: conn.execute(sql, (source, target)))


@pytest.fixture
def user(client: Client, as_user: Callable[[str], Headers]) -> Headers:
    return onboard(client, as_user, USER)


def test_a_push_text_copied_to_another_push_does_not_open(
    client: Client, runtime: Runtime, user: Headers, as_key: Callable[..., Headers]
) -> None:
    key_headers = as_key("pushes:write")
    ids = []
    for n, title in enumerate(("Your parcel has left the depot", "Your refund of 42.00 is on its way")):
        body = {
            "idempotency_key": f"sealed-{n}",
            "user_id": USER,
            "topic": "transactional",
            "title": title,
            "body": "See the app for details",
        }
        answer = client.post("/v1/pushes", json=body, headers=key_headers)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["push_id"])
    first, second = ids
    reader, key = runtime.store.data.reader(), _key(runtime)
    row = pushes.get(reader, second)
    assert row is not None
    content = row.open_content(key)
    assert content is not None
    assert content.title == "Your refund of 42.00 is on its way"

    _copy(runtime, "pushes", "content", "push_id", first, second)
    moved = pushes.get(reader, second)
    assert moved is not None
    original = pushes.get(reader, first)
    assert original is not None
    assert moved.content == original.content
    with pytest.raises(DecryptionError):
        moved.open_content(key)


def test_a_device_token_copied_to_another_device_does_not_open(
    client: Client, runtime: Runtime, user: Headers
) -> None:
    ids = []
    for phone in ("phone-a", "phone-b"):
        device = {"platform": "apns", "token": apns_token(phone)}
        answer = client.post("/v1/me/devices", json=device, headers=user)
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["device_id"])
    first, second = ids
    reader, key = runtime.store.data.reader(), _key(runtime)
    tokens = {d.device_id: d.token for d in devices.list_for(reader, key)}
    assert (tokens[first], tokens[second]) == (apns_token("phone-a"), apns_token("phone-b"))

    _copy(runtime, "devices", "token", "device_id", first, second)
    with pytest.raises(DecryptionError):
        devices.list_for(reader, key)


def test_a_complaints_comment_opens_neither_in_another_complaint_nor_as_a_resolution(
    client: Client, runtime: Runtime, user: Headers
) -> None:
    ids = []
    for comment in ("I never agreed to this", "Why do you know my city?"):
        answer = client.post("/v1/me/complaints", json={"reason": "other", "comment": comment}, headers=user)
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["complaint_id"])
    first, second = ids
    reader, key = runtime.store.data.reader(), _key(runtime)
    row = complaints.get(reader, second)
    assert row is not None
    assert row.open_text(key, "comment") == "Why do you know my city?"

    _copy(runtime, "complaints", "comment", "complaint_id", first, second)
    moved = complaints.get(reader, second)
    assert moved is not None
    with pytest.raises(DecryptionError):
        moved.open_text(key, "comment")

    runtime.store.data.writer.run_sync(
        lambda conn: conn.execute(
            "UPDATE complaints SET resolution = comment WHERE complaint_id = ?", (first,)
        )
    )
    swapped = complaints.get(reader, first)
    assert swapped is not None
    assert swapped.open_text(key, "comment") == "I never agreed to this"
    with pytest.raises(DecryptionError):
        swapped.open_text(key, "resolution")
