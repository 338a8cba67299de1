"""Push ids grow in the order they are made, within a millisecond too. Each test makes its own
sequence: the process's has seen the real clock, later than the tests' instant.

They are the primary key of the pushes, the outbox and the deliveries: made in order, each lands
at the right edge of those indexes. Made in random order within a millisecond (a batch's
thousands share one `now`), a delivery round dirtied a page of the delivery key for every push
or two (docs/performance-history.md, "Push ids in the order they are made").
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from storage.repositories.pushes import PushIds

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _millis(push_id: str) -> int:
    return int(push_id[4:15], 16)


def test_ids_made_at_one_instant_grow_and_carry_its_millisecond() -> None:
    new_push_id = PushIds().new
    ids = [new_push_id(NOW) for _ in range(10_000)]
    assert all(re.fullmatch(r"psh_[0-9a-f]{24}", i) for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {_millis(i) for i in ids} == {int(NOW.timestamp() * 1000)}
    # The steps are random: the next id is not the last one plus one.
    steps = {int(b[4:], 16) - int(a[4:], 16) for a, b in pairwise(ids)}
    assert len(steps) > 9_000
    assert min(steps) >= 1
    assert max(steps) <= 2**24


def test_a_later_millisecond_starts_afresh_and_an_earlier_one_still_comes_after() -> None:
    new_push_id = PushIds().new
    first = new_push_id(NOW)
    later = new_push_id(NOW + timedelta(milliseconds=1))
    assert later > first
    assert _millis(later) == _millis(first) + 1
    # A request that read the clock before another made its id after it: still in the order made.
    earlier = new_push_id(NOW - timedelta(seconds=1))
    assert earlier > later


def test_ids_made_on_several_threads_at_once_grow_in_the_order_they_are_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each draw of random bits sleeps, so the other threads run between reading the last id
    and storing the next, as a switch of the GIL there would let them. The draws are made in the
    order the ids are (one each), so they say which thread's id came next: without the lock the
    threads' ids interleave out of order."""
    new_push_id = PushIds().new
    draws: list[int] = []
    draw = secrets.randbits

    def sleepy(bits: int) -> int:
        time.sleep(0.0001)
        draws.append(threading.get_ident())
        return draw(bits)

    monkeypatch.setattr(secrets, "randbits", sleepy)
    made: dict[int, list[str]] = {}

    def make() -> None:
        made[threading.get_ident()] = [new_push_id(NOW) for _ in range(500)]

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    each = {ident: iter(ids) for ident, ids in made.items()}
    in_order = [next(each[ident]) for ident in draws]
    assert len(in_order) == len(set(in_order)) == 2_000
    assert in_order == sorted(in_order)
