"""The cyclic garbage collector, set for a server whose startup objects live as long as the
process and whose per-request objects are freed by reference counting.

Measured with `bench/inproc.py` (docs/performance-history.md, run G): with CPython's defaults a
campaign of 100,000 spent 4.6 s of its ~30 s in collections, 23 of them full collections of up
to 245 ms each, because every full collection walks everything the app built at startup
(~86,000 objects) and whatever a 10,000-push batch holds at that moment; and a single-push
server paused 89 ms once every few thousand requests. Both are the pauses a p99 shows.

So once the app has started, what exists is frozen (`gc.freeze`: never examined again), and
the youngest generation is collected after 2,000 net allocations instead of 700: requests in
flight hold a few hundred objects each, and at 700 a busy server collected their live objects
over and over. Nothing here turns collection off; cycles are still found, just less often.

The structs made for every push (the request, its prepared form, the policy's context, results
and decision, the row, the answer) are declared `gc=False`: none can hold a cycle, and untracked
they are not walked at all, where a 10,000-push batch would otherwise add hundreds of thousands
of objects to every collection (the campaign's collection time 1,444 -> 836 ms).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["YOUNG_THRESHOLD", "server_collector"]

YOUNG_THRESHOLD = 2_000


@contextmanager
def server_collector() -> Iterator[None]:
    """Freeze what is alive now and collect the young generation less often, until exit."""
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
