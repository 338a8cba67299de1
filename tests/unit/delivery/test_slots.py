"""`Slots`: at most so many holders, the others served in turn, and no slot lost to a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from clients.delivery.slots import Slots


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=10))


async def settle() -> None:
    """Let every task that can run, run (a few turns of the loop)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_no_more_holders_than_slots_and_every_one_served() -> None:
    async def main() -> None:
        slots, holding, most = Slots(3), 0, 0

        async def hold() -> None:
            nonlocal holding, most
            async with slots:
                holding += 1
                most = max(most, holding)
                await asyncio.sleep(0)
                holding -= 1

        await asyncio.gather(*(hold() for _ in range(50)))
        assert (most, holding) == (3, 0)

    run(main)


def test_waiters_are_served_in_the_order_they_came() -> None:
    async def main() -> None:
        slots, served = Slots(1), []
        gate = asyncio.Event()

        async def hold(name: int) -> None:
            async with slots:
                served.append(name)
                await gate.wait()

        tasks = [asyncio.create_task(hold(i)) for i in range(6)]
        await settle()
        gate.set()
        await asyncio.gather(*tasks)
        assert served == list(range(6))

    run(main)


def test_a_waiter_cancelled_while_waiting_takes_no_slot_with_it() -> None:
    async def main() -> None:
        slots = Slots(1)
        release = asyncio.Event()
        served: list[str] = []

        async def hold(name: str) -> None:
            async with slots:
                served.append(name)
                await release.wait()

        first = asyncio.create_task(hold("first"))
        await settle()
        gone = asyncio.create_task(hold("gone"))
        await settle()
        gone.cancel()
        await settle()
        release.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await gone
        await hold("later")  # the slot is free again: not lost, not held by the cancelled one
        assert served == ["first", "later"]

    run(main)


def test_a_slot_given_to_a_waiter_cancelled_before_it_ran_goes_on_to_the_next() -> None:
    async def main() -> None:
        slots = Slots(1)
        served: list[str] = []
        release = asyncio.Event()

        async def hold(name: str) -> None:
            async with slots:
                served.append(name)
                await release.wait()

        await slots.__aenter__()  # held by this test
        given = asyncio.create_task(hold("given"))
        after = asyncio.create_task(hold("after"))
        await settle()
        await slots.__aexit__(None, None, None)  # the slot is handed to `given`...
        given.cancel()  # ...cancelled before it could run
        release.set()
        await asyncio.wait_for(after, timeout=5)
        with pytest.raises(asyncio.CancelledError):
            await given
        assert served == ["after"]
        await hold("last")  # and nothing was lost on the way

    run(main)


def test_a_holder_that_fails_gives_its_slot_back() -> None:
    async def main() -> None:
        slots = Slots(1)
        with pytest.raises(RuntimeError):
            async with slots:
                raise RuntimeError("send failed")
        async with slots:
            pass

    run(main)


def test_no_slots_at_all_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        Slots(0)
