"""`SendChecks` answers every send of a wave, whatever its reads meet.

The sends of a delivery round ask, just before each starts, whether their users are still
live, their devices still theirs and active, their choices as their decisions read them and
their campaigns not paused since; a few reads per turn of the event loop answer them all. A
send left without an answer would hold its provider connection, and its round, for good: so a
read that fails with anything at all answers each of its sends "could not be read", not only a
read failing with an ordinary error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.services.send_checks import Asked, SendChecks, Stop
from storage.keys import KeyStore
from storage.repositories import campaigns, consents, subject_state
from storage.store import Store

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


class Halt(BaseException):
    """Not an `Exception`: what no `except Exception` catches (a cancellation, an exit)."""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "store", KeyStore.create(tmp_path / "store" / "keys.json"))
    yield opened
    opened.close()


def _subject(store: Store, user_id: str) -> str:
    return store.directory.ensure(store.pseudonyms.subject_ref(user_id), NOW).subject_id


def _device(store: Store, subject_id: str, device_id: str, status: str = "active") -> str:
    """A device row as registration leaves it; the checks read its owner and status only."""
    store.data.writer.run_sync(
        lambda conn: conn.execute(
            "INSERT INTO devices (device_id, subject_id, platform, token, fingerprint, status, created_at) "
            "VALUES (?, ?, 'fcm', x'00', x'00', ?, ?)",
            (device_id, subject_id, status, NOW.isoformat()),
        )
    )
    return device_id


def _wave(store: Store, *sends: Asked) -> list[Stop | None]:
    async def wave() -> list[Stop | None]:
        asking = SendChecks(store)
        return list(await asyncio.gather(*(asking.ask(send) for send in sends)))

    return asyncio.run(wave())


def test_a_wave_is_answered_by_one_read_live_or_not(store: Store) -> None:
    live = _subject(store, "live-user")
    phone = _device(store, live, "dev_phone")
    assert _wave(
        store, Asked(live, (phone, None), None, None), Asked("s_never_seen", (phone, None), None, None)
    ) == [
        None,
        "erased",
    ]


def test_a_device_removed_disabled_or_now_another_user_s_stops_its_send(store: Store) -> None:
    """A review saw the last user's push reach the phone another user had registered since."""
    live, other = _subject(store, "live-user"), _subject(store, "other-user")
    _device(store, live, "dev_off", status="disabled")
    _device(store, other, "dev_handed_over")
    sends = [
        Asked(live, (device, None), None, None) for device in ("dev_removed", "dev_off", "dev_handed_over")
    ]
    assert _wave(store, *sends) == ["device", "device", "device"]


def test_a_device_registered_again_since_the_claim_stops_its_send(store: Store) -> None:
    """Its Web Push keys may be new, which the message read at the claim was not encrypted for."""
    live = _subject(store, "live-user")
    phone = _device(store, live, "dev_phone")
    store.data.writer.run_sync(
        lambda conn: conn.execute("UPDATE devices SET registered_at = ? WHERE device_id = ?", ("t1", phone))
    )
    assert _wave(store, Asked(live, (phone, "t1"), None, None), Asked(live, (phone, "t0"), None, None)) == [
        None,
        "device",
    ]


def test_choices_changed_since_the_decision_stop_the_sends_whose_decision_read_them(store: Store) -> None:
    live = _subject(store, "live-user")
    phone = _device(store, live, "dev_phone")

    def consent(granted: bool) -> None:
        store.data.writer.run_sync(lambda conn: consents.put(conn, live, "marketing", granted, "v1", NOW))

    consent(True)
    seen = subject_state.choices_stamp(store.data.reader(), [live])[live]
    assert _wave(store, Asked(live, (phone, None), None, seen)) == [None]
    consent(False)  # withdrawn at the same instant by the clock: the stamp still changes
    assert _wave(store, Asked(live, (phone, None), None, seen), Asked(live, (phone, None), None, None)) == [
        "changed",
        None,
    ]


def test_a_campaign_paused_stops_its_sends_and_a_mark_those_decided_before_it(store: Store) -> None:
    live = _subject(store, "live-user")
    phone = _device(store, live, "dev_phone")

    def create(name: str) -> str:
        return store.data.writer.run_sync(
            lambda conn: campaigns.create(conn, name, "promotions", "key_1", NOW)
        ).campaign_id

    paused, running = create("paused"), create("running")
    store.data.writer.run_sync(lambda conn: campaigns.pause(conn, paused, NOW, "by hand"))

    assert _wave(
        store, Asked(live, (phone, None), (paused, 7), None), Asked(live, (phone, None), (running, 7), None)
    ) == [
        "paused",
        None,
    ]


def test_a_read_that_fails_with_anything_answers_every_send_of_its_wave(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def halting(subject_ids: Iterable[str]) -> set[str]:
        raise Halt

    monkeypatch.setattr(store.directory, "holding", halting)
    answers: list[asyncio.Future[Stop | None]] = []

    reported: list[object] = []

    def on_error(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        reported.append(context.get("exception"))  # raised out of the read's callback

    async def wave() -> None:
        asyncio.get_running_loop().set_exception_handler(on_error)
        asking = SendChecks(store)
        answers.extend(
            [
                asking.ask(Asked("s_one", ("d1", None), None, None)),
                asking.ask(Asked("s_two", ("d2", None), ("cmp_x", 1), "x")),
            ]
        )
        await asyncio.sleep(0)  # the read's turn
        await asyncio.sleep(0)

    asyncio.run(wave())
    assert [type(e) for e in reported] == [Halt]
    assert [a.done() and a.result() for a in answers] == ["unread", "unread"]
