"""`LiveSubjects` answers every send of a wave, whatever its one read meets.

The sends of a delivery round ask, just before each starts, whether their users are still
live; one directory read per turn of the event loop answers them all. A send left without an
answer would hold its provider connection, and its round, for good: so a read that fails with
anything at all answers each of its sends "could not be read" (None), not only a read failing
with an ordinary error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.services.live_subjects import LiveSubjects
from storage.keys import KeyStore
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

    async def wave() -> list[bool | None]:
        asking = LiveSubjects(store)
        return list(await asyncio.gather(asking.ask(live), asking.ask("s_never_seen"), asking.ask(live)))

    assert asyncio.run(wave()) == [True, False, True]


def test_a_read_that_fails_with_anything_answers_every_send_of_its_wave(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def halting(subject_ids: Iterable[str]) -> set[str]:
        raise Halt

    monkeypatch.setattr(store.directory, "holding", halting)
    answers: list[asyncio.Future[bool | None]] = []

    reported: list[object] = []

    def on_error(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        reported.append(context.get("exception"))  # raised out of the read's callback

    async def wave() -> None:
        asyncio.get_running_loop().set_exception_handler(on_error)
        asking = LiveSubjects(store)
        answers.extend([asking.ask("s_one"), asking.ask("s_two")])
        await asyncio.sleep(0)  # the read's turn
        await asyncio.sleep(0)

    asyncio.run(wave())
    assert [type(e) for e in reported] == [Halt]
    assert [a.done() and a.result() for a in answers] == [None, None]
