"""`SendChecks` answers every send of a wave, whatever its reads meet.

The sends of a delivery round ask, just before each starts, whether their users are still
live and their campaigns not paused since; one directory read and one read per campaign per
turn of the event loop answer them all. A send left without an answer would hold its provider
connection, and its round, for good: so a read that fails with anything at all answers each
of its sends "could not be read", not only a read failing with an ordinary error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.services.send_checks import SendChecks, Stop
from storage.keys import KeyStore
from storage.repositories import campaigns
from storage.store import Store

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


class Halt(BaseException):
    """Not an `Exception`: what no `except Exception` catches (a cancellation, an exit)."""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "store", KeyStore.create(tmp_path / "store" / "keys.json"))
    yield opened
    opened.close()


def test_a_wave_is_answered_by_one_read_live_or_not(store: Store) -> None:
    live = store.directory.ensure(store.pseudonyms.subject_ref("live-user"), NOW).subject_id

    async def wave() -> list[Stop | None]:
        asking = SendChecks(store)
        return list(
            await asyncio.gather(
                asking.ask(live, None), asking.ask("s_never_seen", None), asking.ask(live, None)
            )
        )

    assert asyncio.run(wave()) == [None, "erased", None]


def test_a_campaign_paused_stops_its_sends_and_a_mark_those_decided_before_it(store: Store) -> None:
    live = store.directory.ensure(store.pseudonyms.subject_ref("live-user"), NOW).subject_id

    def create(name: str) -> str:
        return store.data.writer.run_sync(
            lambda conn: campaigns.create(conn, name, "promotions", "key_1", NOW)
        ).campaign_id

    paused, running = create("paused"), create("running")
    store.data.writer.run_sync(lambda conn: campaigns.pause(conn, paused, NOW, "by hand"))

    async def wave() -> list[Stop | None]:
        asking = SendChecks(store)
        return list(await asyncio.gather(asking.ask(live, (paused, 7)), asking.ask(live, (running, 7))))

    assert asyncio.run(wave()) == ["paused", None]


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
        answers.extend([asking.ask("s_one", None), asking.ask("s_two", ("cmp_x", 1))])
        await asyncio.sleep(0)  # the read's turn
        await asyncio.sleep(0)

    asyncio.run(wave())
    assert [type(e) for e in reported] == [Halt]
    assert [a.done() and a.result() for a in answers] == ["unread", "unread"]
