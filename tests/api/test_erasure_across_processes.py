"""A subject erased through one process is erased for every other process on the same data dir.

Each process caches the data keys of the subjects it has seen (storage/directory.py). `DELETE
/v1/me` drops the subject's entry in the process that serves it; any other process (a second
`serve` on the same data dir) reads the subject's row again once its entry is `MAX_AGE_SECONDS`
old, and finds it gone, or holding the new subject of a user who came back. Here a subject is
cached by one process (a push decided through it), erased through the other, and the first must
answer `subject_erased` to a new push within the bound, having sealed and queued nothing for them
meanwhile. The in-process pair injects a short bound; the real processes run with the default one.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FakeClock, Headers
from litestar import Litestar
from litestar.testing import TestClient
from support import Scripted, Server, serve_process

from gateway.app import create_app
from gateway.runtime import Runtime
from gateway.services.dispatch import Dispatcher
from gateway.settings import Settings
from storage.db import Database
from storage.directory import MAX_AGE_SECONDS, SubjectDirectory
from storage.repositories import pushes

ROOT = Path(__file__).resolve().parents[2]
USER = "erin"
SHORT_MAX_AGE = 0.2
SLACK_SECONDS = 10.0  # for a loaded machine: the bound is checked, not how fast it is met
ERASED = [{"code": "subject_erased"}]

Json = dict[str, Any]
Submit = Callable[[], Json]


def _push_body(key: str) -> Json:
    return {"idempotency_key": key, "user_id": USER, "topic": "transactional", "title": "t", "body": "b"}


def _submitter(post: Any, service: Headers, prefix: str) -> Submit:
    """A push to USER through `post` with a new idempotency key each call (from `prefix`, so two
    submitters never replay each other's pushes); returns the answer."""
    keys = (f"{prefix}-{n}" for n in itertools.count())

    def submit() -> Json:
        answer = post("/v1/pushes", json=_push_body(next(keys)), headers=service)
        assert answer.status_code == 200, answer.text
        got: Json = answer.json()
        return got

    return submit


def _until(submit: Submit, done: Callable[[Json], bool], seconds: float) -> list[Json]:
    """Every answer of `submit` until one is `done` or `seconds` (plus slack) pass."""
    deadline = time.monotonic() + seconds + SLACK_SECONDS
    answers = [submit()]
    while not done(answers[-1]) and time.monotonic() < deadline:
        time.sleep(0.02)
        answers.append(submit())
    return answers


def _erased(answer: Json) -> bool:
    return bool(answer["reasons"] == ERASED)


def _register(post: Any, user: Headers, token: str) -> None:
    answer = post("/v1/me/devices", json={"platform": "fcm", "token": token}, headers=user)
    assert answer.status_code == 201, answer.text


def _trusting_for(runtime: Runtime, seconds: float) -> Database:
    """Each request finds the directory on the store: this app trusts a cached key for `seconds`
    instead of the default's second. Returns the directory's database."""
    db = runtime.store._directory_db
    runtime.store.directory = SubjectDirectory(db, runtime.keys.keyring, max_age=seconds)
    return db


def _round(client: TestClient[Litestar], runtime: Runtime) -> Scripted:
    """One delivery round of this app's queued pushes, to a provider that takes every one; it
    says what it was sent."""
    sent = Scripted("scripted-ok", "delivered")
    rt = runtime
    dispatcher = Dispatcher(rt.store, rt.clock, rt.settings, rt.policy, rt.metrics, {"fcm": sent})
    assert client.blocking_portal.call(dispatcher.run_once, "test-worker", 10) == 1
    return sent


def _subjects_of(db: Database, runtime: Runtime) -> int:
    """How many live subjects the user has in the directory (0 once erased, until they come back)."""
    ref = runtime.store.pseudonyms.subject_ref(USER)
    return int(
        db.reader().execute("SELECT count(*) FROM subjects WHERE subject_ref = ?", (ref,)).fetchone()[0]
    )


def test_a_subject_erased_through_another_app_is_refused_within_the_bound(
    client: TestClient[Litestar],
    runtime: Runtime,
    settings: Settings,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    _trusting_for(runtime, SHORT_MAX_AGE)
    user, service = as_user(USER), as_key("pushes:write")
    _register(client.post, user, "fcm-token-erin-x1y2")
    queued = client.post("/v1/pushes", json=_push_body("before"), headers=service).json()
    assert queued["outcome"] == "queued", queued  # decided through this app: the subject is cached

    with TestClient(create_app(settings, clock)) as other:
        assert other.delete("/v1/me", headers=user).status_code == 204
        assert _submitter(other.post, service, "there")()["reasons"] == ERASED  # at once where it was erased

    # The delivery path reads its subjects by id every round: the queued push ends, unsent.
    sent = _round(client, runtime)
    ended = client.get(f"/v1/pushes/{queued['push_id']}", headers=service).json()
    assert (ended["status"], ended["reasons"], sent.sent) == ("rejected", ERASED, [])

    answers = _until(_submitter(client.post, service, "here"), _erased, SHORT_MAX_AGE)
    assert _erased(answers[-1]), f"still not erased here: {answers[-1]}"
    assert {a["outcome"] for a in answers} == {"rejected"}  # nothing queued meanwhile
    refused = pushes.get(runtime.store.data.reader(), answers[-1]["push_id"])
    assert refused is not None
    assert (refused.subject_id, refused.content) == (None, None)  # linked to no subject, nothing sealed


def test_a_user_who_came_back_through_another_app_gets_their_new_subject_within_the_bound(
    client: TestClient[Litestar],
    runtime: Runtime,
    settings: Settings,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    _trusting_for(runtime, SHORT_MAX_AGE)
    user, service = as_user(USER), as_key("pushes:write")
    _register(client.post, user, "fcm-token-erin-old1")
    assert client.post("/v1/pushes", json=_push_body("before"), headers=service).json()["outcome"] == "queued"

    with TestClient(create_app(settings, clock)) as other:
        assert other.delete("/v1/me", headers=user).status_code == 204
        _register(other.post, user, "fcm-token-erin-new2")
        back = other.app.state.runtime.store.directory.resolve(runtime.store.pseudonyms.subject_ref(USER))
        assert back is not None

    answers = _until(
        _submitter(client.post, service, "here"), lambda a: a["outcome"] == "queued", SHORT_MAX_AGE
    )
    assert answers[-1]["outcome"] == "queued", f"still the old subject here: {answers[-1]}"
    assert {a["outcome"] for a in answers[:-1]} <= {"rejected"}  # the old subject has no device left
    row = pushes.get(runtime.store.data.reader(), answers[-1]["push_id"])
    assert row is not None
    assert row.subject_id == back.subject_id
    content = row.open_content(back)
    assert content is not None
    assert content.title == "t"  # sealed under the new subject's key


@pytest.mark.parametrize("write", ["device", "consent", "preferences", "complaint"])
def test_a_write_through_an_app_still_trusting_its_cache_after_an_erasure_leaves_nothing_behind(
    client: TestClient[Litestar],
    runtime: Runtime,
    settings: Settings,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    write: str,
) -> None:
    """This app trusts its cached key for a minute here (a second by default): a write through it
    after an erasure made through another app landed under the erased subject's id after the
    erasure's cleanup, and stayed: a device's token tag, a consent's columns and a ledger event
    after `subject.erased`. It now goes to whoever the user is now, a new subject."""
    _trusting_for(runtime, 60.0)
    user = as_user(USER)
    _register(client.post, user, "fcm-token-erin-first")  # this app holds the subject's key now
    ref = runtime.store.pseudonyms.subject_ref(USER)
    erased = runtime.store.directory.resolve(ref)
    assert erased is not None

    with TestClient(create_app(settings, clock)) as other:
        assert other.delete("/v1/me", headers=user).status_code == 204

    if write == "device":
        _register(client.post, user, "fcm-token-erin-again")
    elif write == "consent":
        answer = client.put(
            "/v1/me/consents/marketing", json={"granted": True, "notice_version": "v1"}, headers=user
        )
        assert answer.status_code == 200, answer.text
    elif write == "preferences":
        answer = client.patch("/v1/me/preferences", json={"timezone": "Asia/Shanghai"}, headers=user)
        assert answer.status_code == 200, answer.text
    else:
        answer = client.post("/v1/me/complaints", json={"reason": "other", "comment": "a note"}, headers=user)
        assert answer.status_code == 201, answer.text

    conn = runtime.store.data.reader()
    for table in ("devices", "consents", "preferences", "complaints", "locations", "mutes"):
        left = conn.execute(f"SELECT count(*) FROM {table} WHERE subject_id = ?", (erased.subject_id,))  # noqa: S608
        assert left.fetchone()[0] == 0, table
    after = conn.execute(
        "SELECT kind FROM ledger WHERE subject_id = ? AND seq > "
        "(SELECT max(seq) FROM ledger WHERE subject_id = ? AND kind = 'subject.erased')",
        (erased.subject_id, erased.subject_id),
    ).fetchall()
    assert after == []
    now = runtime.store.directory.resolve(ref)
    assert now is not None
    assert now.subject_id != erased.subject_id  # the user came back, anew


def test_a_refused_complaint_through_an_app_still_trusting_its_cache_does_not_bring_the_user_back(
    client: TestClient[Litestar],
    runtime: Runtime,
    settings: Settings,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """A complaint about a push, through an app still trusting its cached key after an erasure
    made through another: the write found the subject gone and was made again for a new one,
    made in the directory before the unit refused the complaint 404 (the push is the erased
    subject's). The refusal kept that subject: the user was live again, and their later pushes
    answered `no_device` where `subject_erased` was due. A refused request changes nothing."""
    db = _trusting_for(runtime, 60.0)
    user, service = as_user(USER), as_key("pushes:write")
    _register(client.post, user, "fcm-token-erin-complains")
    push_id = client.post("/v1/pushes", json=_push_body("complained-of"), headers=service).json()["push_id"]

    with TestClient(create_app(settings, clock)) as other:
        assert other.delete("/v1/me", headers=user).status_code == 204

    complaint = {"push_id": push_id, "reason": "other"}
    refused = client.post("/v1/me/complaints", json=complaint, headers=user)
    assert refused.status_code == 404, refused.text
    assert _subjects_of(db, runtime) == 0  # still erased: no subject was made for the refused complaint
    assert _submitter(client.post, service, "later")()["reasons"] == ERASED


def test_an_event_through_an_app_still_trusting_its_cache_after_an_erasure_is_not_recorded(
    client: TestClient[Litestar],
    runtime: Runtime,
    settings: Settings,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
) -> None:
    """What the user did with a push, told through an app still trusting its cached key after an
    erasure made through another: it was recorded for the erased user's push after
    `subject.erased`, and counted in the campaign's statistics. It is a 404 now, as to any user
    the push was not delivered to, and brings no subject back."""
    db = _trusting_for(runtime, 60.0)
    user, service = as_user(USER), as_key("pushes:write")
    _register(client.post, user, "fcm-token-erin-opens")
    push_id = client.post("/v1/pushes", json=_push_body("opened"), headers=service).json()["push_id"]
    _round(client, runtime)
    assert client.get(f"/v1/pushes/{push_id}", headers=service).json()["status"] == "delivered"

    with TestClient(create_app(settings, clock)) as other:
        assert other.delete("/v1/me", headers=user).status_code == 204

    clock.advance(seconds=5)
    refused = client.post(f"/v1/me/pushes/{push_id}/events", json={"type": "converted"}, headers=user)
    assert refused.status_code == 404, refused.text
    conn = runtime.store.data.reader()
    assert conn.execute("SELECT count(*) FROM push_events WHERE push_id = ?", (push_id,)).fetchone()[0] == 0
    assert _subjects_of(db, runtime) == 0


@pytest.mark.parametrize("how", ["single", "batch"])
def test_a_push_through_an_app_still_trusting_its_cache_after_an_erasure_is_refused_as_erased(
    client: TestClient[Litestar],
    runtime: Runtime,
    settings: Settings,
    clock: FakeClock,
    as_user: Callable[[str], Headers],
    as_key: Callable[..., Headers],
    how: str,
) -> None:
    """This app trusts its cached key for a minute here: a push through it after an erasure made
    through another app was decided against the emptied subject (`no_device`, not
    `subject_erased`) and recorded under the erased subject's id, with the fingerprint of its
    content that the erasure's cleanup removes from every push of theirs. It is now refused as
    erased, linked to no subject, with no fingerprint."""
    _trusting_for(runtime, 60.0)
    user, service = as_user(USER), as_key("pushes:write")
    _register(client.post, user, "fcm-token-erin-cached")
    assert client.post("/v1/pushes", json=_push_body("cached"), headers=service).json()["outcome"] == "queued"

    with TestClient(create_app(settings, clock)) as other:
        assert other.delete("/v1/me", headers=user).status_code == 204

    if how == "single":
        answer = client.post("/v1/pushes", json=_push_body("after"), headers=service).json()
    else:
        batch = {"pushes": [_push_body("after"), {**_push_body("other"), "user_id": "someone-else"}]}
        answer = client.post("/v1/pushes/batch", json=batch, headers=service).json()["results"][0]
    assert (answer["outcome"], answer["reasons"]) == ("rejected", ERASED), answer
    row = (
        runtime.store.data.reader()
        .execute("SELECT subject_id, length(fingerprint) FROM pushes WHERE push_id = ?", (answer["push_id"],))
        .fetchone()
    )
    assert tuple(row) == (None, 0)


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two `consent-gateway serve` processes on one data dir, without workers: what is queued
    stays in the outbox, where the test can see it."""
    data_dir, settings = tmp_path / "data", {"CGW_WORKER_ENABLED": "false"}
    with serve_process(data_dir, tmp_path / "first.stderr", settings) as first:
        with serve_process(data_dir, tmp_path / "second.stderr", settings) as second:
            yield first, second
            second.stop()
        first.stop()


def _cli(server: Server, *args: str) -> str:
    done = server.cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.slow
def test_a_subject_erased_through_another_serve_process_is_refused_within_the_bound(
    two_servers: tuple[Server, Server],
) -> None:
    first, second = two_servers
    service = {
        "Authorization": "Bearer " + _cli(first, "keys", "create", "--name", "svc", "--scope", "pushes:write")
    }
    user = {"Authorization": "Bearer " + _cli(first, "token", USER)}

    with (
        httpx.Client(base_url=first.base, timeout=10.0) as one,
        httpx.Client(base_url=second.base, timeout=10.0) as two,
    ):
        _register(one.post, user, "fcm-token-erin-x1y2")
        queued = one.post("/v1/pushes", json=_push_body("before"), headers=service).json()
        assert queued["outcome"] == "queued", queued  # decided by the first process: cached there
        erased = two.delete("/v1/me", headers=user)
        assert erased.status_code == 204, erased.text

        answers = _until(_submitter(one.post, service, "here"), _erased, MAX_AGE_SECONDS)
        assert _erased(answers[-1]), f"still not erased in the first process: {answers[-1]}"
        assert {a["outcome"] for a in answers} == {"rejected"}  # nothing queued meanwhile
        read = one.get(f"/v1/pushes/{answers[-1]['push_id']}", headers=service).json()
        assert (read["status"], read["reasons"]) == ("rejected", ERASED)


def test_security_md_states_the_bound_in_force() -> None:
    security = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    assert f"trusts a cached entry for at most {MAX_AGE_SECONDS:g} s" in security.replace("\n  ", " ")
