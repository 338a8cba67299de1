"""Which tables and indexes a workload's commits write: each commit's WAL frames, by b-tree.

A commit costs what it writes: SQLCipher encrypts and MACs every page a transaction dirtied, the
WAL takes it, and a checkpoint copies it back. Which b-trees those pages belong to says where a
layout change would pay. SQLCipher is built without `dbstat`, so this finds out itself: a WAL
frame's header (its page number) is in clear, a page decrypts with the raw database key
(AES-256-CBC over all but the page's reserved tail, whose first 16 bytes are the IV; page 1
keeps its first 16, the salt, in clear), and the b-trees are walked from `sqlite_master`'s root
pages. The walk is made once, at the end of the measured work, so a page freed before then (an
outbox page emptied, say) counts as "freed or reused" or as the b-tree that took it again.

It runs `inproc.py`'s modes with the writer's `_flush_group` wrapped, counting only the commits
made during the measured work (a delivery's drain, not its queueing). The CPU figures `inproc.py`
prints then include this reading of the WAL after each commit: price changes with `inproc.py`.

    python bench/wal_pages.py delivery --count 20000
    python bench/wal_pages.py campaign --seeded DIR --count 100000

Used in docs/performance-history.md ("Push ids in the order they are made", "Shorter
idempotency refs").
"""

from __future__ import annotations

import struct
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any

import inproc
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from storage import connections
from storage.writer import Writer

PAGE = 4096
# SQLCipher 4: at the end of each page a 16-byte IV, then the page's MAC (`connections.page_mac_of`).
RESERVE = {connections.SHA256_PAGES: 16 + 32, connections.SHA512_PAGES: 16 + 64}
WAL_HEADER, FRAME_HEADER = 32, 24
TABLE_INTERIOR, INDEX_INTERIOR = 5, 2


def frames(wal: bytes, offset: int = WAL_HEADER) -> Iterator[tuple[int, int]]:
    """(page number, where its image starts) of each frame from `offset` on that belongs to the
    WAL's current run: a checkpoint that rewinds the WAL changes the salt its frames carry."""
    salt = wal[16:24]
    while offset + FRAME_HEADER + PAGE <= len(wal) and wal[offset + 8 : offset + 16] == salt:
        yield struct.unpack(">I", wal[offset : offset + 4])[0], offset + FRAME_HEADER
        offset += FRAME_HEADER + PAGE


class Wal:
    """The frames appended to one WAL since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._salt = b""
        self._offset = WAL_HEADER

    def new_pages(self) -> list[int]:
        wal = self.path.read_bytes()
        if wal[16:24] != self._salt:  # rewound: its frames start again after the header
            self._salt, self._offset = wal[16:24], WAL_HEADER
        pages = [number for number, _ in frames(wal, self._offset)]
        self._offset += len(pages) * (FRAME_HEADER + PAGE)
        return pages


def decrypt(page: bytes, number: int, key: bytes, usable: int) -> bytes:
    start = 16 if number == 1 else 0
    decryptor = Cipher(algorithms.AES(key), modes.CBC(page[usable : usable + 16])).decryptor()
    body = decryptor.update(page[start:usable]) + decryptor.finalize()
    return bytes(start) + body


def latest_pages(path: Path) -> dict[int, bytes]:
    """Every page as it is now: the file's, then the WAL's frames over them, in order."""
    data = path.read_bytes()
    pages = {n + 1: data[n * PAGE : (n + 1) * PAGE] for n in range(len(data) // PAGE)}
    wal_path = Path(f"{path}-wal")
    if wal_path.exists():
        wal = wal_path.read_bytes()
        for number, at in frames(wal):
            pages[number] = wal[at : at + PAGE]
    return pages


def owners(path: Path, key: bytes) -> dict[int, str]:
    """Page number → the table or index whose b-tree holds it (overflow pages are not followed:
    no row here is long enough to have any)."""
    mac = connections.page_mac_of(path, key)
    usable = PAGE - RESERVE[mac]
    conn = connections.connect(path, key, page_mac=mac)
    try:
        roots = conn.execute("SELECT name, rootpage FROM sqlite_master WHERE rootpage > 0").fetchall()
    finally:
        conn.close()
    pages = latest_pages(path)
    owner: dict[int, str] = {}
    for name, root in roots:
        todo = [int(root)]
        while todo:
            number = todo.pop()
            if number not in pages or number in owner:
                continue
            owner[number] = str(name)
            page = decrypt(pages[number], number, key, usable)
            head = 100 if number == 1 else 0
            if page[head] in (TABLE_INTERIOR, INDEX_INTERIOR):
                cells = struct.unpack(">H", page[head + 3 : head + 5])[0]
                todo.append(struct.unpack(">I", page[head + 8 : head + 12])[0])  # the right-most child
                for cell in range(cells):
                    at = struct.unpack(">H", page[head + 12 + 2 * cell : head + 14 + 2 * cell])[0]
                    todo.append(struct.unpack(">I", page[at : at + 4])[0])
    return owner


class Counting:
    """The writer's commits while `measuring`, each as the pages it appended to the WAL."""

    def __init__(self) -> None:
        self.measuring = False
        self.commits: list[list[int]] = []
        self.database: tuple[Path, bytes] | None = None  # gateway.db and its key, once it commits
        self.wal: Wal | None = None

    def wrap_writer(self) -> None:
        flush = Writer._flush_group

        @wraps(flush)
        def counted(writer: Writer) -> None:
            path: Path = writer._path
            if not self.measuring or path.name != "gateway.db":
                flush(writer)
                return
            if self.wal is None:
                self.database, self.wal = (path, writer._key), Wal(Path(f"{path}-wal"))
            wal = self.wal
            if wal.path.exists():
                wal.new_pages()  # what came before this commit is not its own
            flush(writer)
            self.commits.append(wal.new_pages())

        Writer._flush_group = counted  # type: ignore[method-assign,assignment]

    def measured(self, work: Callable[..., Awaitable[str]]) -> Callable[..., Awaitable[str]]:
        @wraps(work)
        async def measuring(*args: Any, **kwargs: Any) -> str:
            self.measuring = True
            try:
                result = await work(*args, **kwargs)
            finally:
                self.measuring = False
            return f"{result}\n{self.report()}"  # while the app, and its files, are still there

        return measuring

    def report(self) -> str:
        if self.database is None or not self.commits:
            return "no commits measured"
        owner = owners(*self.database)
        per_tree: Counter[str] = Counter()
        for pages in self.commits:
            per_tree.update(owner.get(page, "(freed or reused)") for page in set(pages))
        n = len(self.commits)
        lines = [
            f"{n} commits, {sum(map(len, self.commits)):,} frames, "
            f"{sum(len(set(p)) for p in self.commits) / n:,.1f} pages a commit:"
        ]
        lines += [f"  {name:45s} {count / n:9.1f}" for name, count in per_tree.most_common()]
        return "\n".join(lines)


def main() -> None:
    counting = Counting()
    counting.wrap_writer()
    inproc._drain = counting.measured(inproc._drain)  # type: ignore[assignment]
    inproc._campaign = counting.measured(inproc._campaign)  # type: ignore[assignment]
    inproc._batch = counting.measured(inproc._batch)  # type: ignore[assignment]
    sys.argv[0] = "bench/inproc.py"
    inproc.main()


if __name__ == "__main__":
    main()
