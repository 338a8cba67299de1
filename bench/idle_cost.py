"""What a pause costs the work after it: the same call timed back to back and after a sleep.

Single pushes cost more CPU each below saturation (560 µs at half load against 285 at the
limit in run AR). Part of it is that fewer pushes share each writer unit; part is that the loop
thread waits for each group's fsync with nothing else to do, and comes back to caches that other
work emptied meanwhile. This separates the second: it times, on this thread's CPU clock, a
directory lookup of one subject (SQLite, SQLCipher's page cache, an AES-GCM key unwrap) and a
plain Python function with no I/O, each back to back and after sleeps of 0.1, 1 and 10 ms.
Numbers only, no pass or fail; about a minute (most of it making the 20,000 subjects).

    taskset -c 0 python bench/idle_cost.py
"""

from __future__ import annotations

import hashlib
import json
import platform
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import users

from gateway.runtime import Runtime

PAUSES_MS = (0.0, 0.1, 1.0, 10.0)
SUBJECTS = 20_000
_DOC = {f"k{i}": list(range(i % 7)) for i in range(200)}


def _plain() -> None:
    hashlib.sha256(json.dumps(_DOC).encode()).digest()


def _cpu_per_call(call: Callable[[], None], pause_ms: float, calls: int) -> float:
    spent = 0.0
    for _ in range(calls):
        if pause_ms:
            time.sleep(pause_ms / 1000)
        started = time.thread_time()
        call()
        spent += time.thread_time() - started
    return spent / calls * 1e6


def main() -> None:
    print(f"Python {platform.python_version()} on {platform.machine()}; µs of this thread's CPU a call")
    with tempfile.TemporaryDirectory() as tmp:
        users.prepare(Path(tmp), SUBJECTS)
        runtime = Runtime(users.settings_for(Path(tmp)))
        try:
            refs = [runtime.store.pseudonyms.subject_ref(f"{users.USER_PREFIX}{i}") for i in range(SUBJECTS)]
            random.shuffle(refs)
            unseen = iter(refs)  # each looked up once: none is in the directory's cache yet

            def lookup_one() -> None:
                runtime.store.directory.resolve_many([next(unseen)])

            for pause in PAUSES_MS:
                calls = 300 if pause >= 10 else 2_000
                lookup = _cpu_per_call(lookup_one, pause, calls)
                plain = _cpu_per_call(_plain, pause, calls)
                print(f"after {pause:>4g} ms idle: one subject looked up {lookup:6.1f}, plain {plain:6.1f}")
        finally:
            runtime.close()


if __name__ == "__main__":
    main()
