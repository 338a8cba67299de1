"""The subject directory's cache when another process erases: two `Store`s on one data dir stand in
for `consent-gateway serve` and a `consent-gateway worker` beside it, each with its own cache.

A subject who is erased and registers again keeps its subject_ref but gets a new subject id and a
new data key; a process that cached the old pair must not hand out the old key for the new id
(every delivery round would fail to open the subject's pushes). And a worker process, which never
hears of erasures, must hold no data key once its round is over (SECURITY.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from storage.crypto import field_aad
from storage.directory import SubjectDirectory
from storage.keys import KeyStore
from storage.store import Store

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
REF = "sub_" + "a" * 52
AAD = field_aad("devices", "token", "dev_1", "s_1")


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def serve(store_dir: Path) -> Iterator[Store]:
    opened = Store(store_dir, KeyStore.create(store_dir / "keys.json"))
    yield opened
    opened.close()


@pytest.fixture
def worker(serve: Store, store_dir: Path) -> Iterator[Store]:
    opened = Store(store_dir, KeyStore.load(store_dir / "keys.json"))
    yield opened
    opened.close()


def _cached_refs(store: Store) -> set[str]:
    return set(store.directory._cache)


def test_a_worker_process_gets_the_new_key_of_a_subject_who_was_erased_and_came_back(
    serve: Store, worker: Store
) -> None:
    first = serve.directory.ensure(REF, NOW)
    assert worker.directory.by_subject_ids([first.subject_id])[first.subject_id].subject_ref == REF

    serve.directory.erase(REF, NOW)
    second = serve.directory.ensure(REF, NOW)
    assert second.subject_id != first.subject_id
    sealed = second.cipher.seal(b"new phone token", AAD)

    found = worker.directory.by_subject_ids([first.subject_id, second.subject_id])
    assert set(found) == {second.subject_id}
    assert found[second.subject_id].subject_ref == REF
    assert found[second.subject_id].cipher.open(sealed, AAD) == b"new phone token"
    assert worker.directory.by_subject_id(second.subject_id) is not None


def test_a_worker_process_holds_no_data_key_after_its_round(serve: Store, worker: Store) -> None:
    subject = serve.directory.ensure(REF, NOW)
    assert subject.subject_id in worker.directory.by_subject_ids([subject.subject_id])
    assert worker.directory.by_subject_id(subject.subject_id) is not None
    assert _cached_refs(worker) == set()  # so an erasure by `serve` leaves it nothing to forget

    serve.directory.erase(REF, NOW)
    assert worker.directory.by_subject_ids([subject.subject_id]) == {}
    assert _cached_refs(serve) == set()


def test_a_stale_entry_is_dropped_when_an_id_lookup_shows_it(serve: Store, worker: Store) -> None:
    # `worker` here is any process that looked the ref up by ref (a second `serve`, say)
    first = worker.directory.ensure(REF, NOW)
    assert _cached_refs(worker) == {REF}
    serve.directory.erase(REF, NOW)
    second = serve.directory.ensure(REF, NOW)

    assert worker.directory.refs_for([second.subject_id]) == {second.subject_id: REF}
    assert _cached_refs(worker) == set()  # the id lookup showed the entry's id is no longer REF's
    again = worker.directory.resolve(REF)
    assert again is not None
    assert again.subject_id == second.subject_id != first.subject_id
    sealed = second.cipher.seal(b"x", AAD)
    assert again.cipher.open(sealed, AAD) == b"x"

    # the same through by_subject_ids, from a stale entry again
    serve.directory.erase(REF, NOW)
    third = serve.directory.ensure(REF, NOW)
    found = worker.directory.by_subject_ids([third.subject_id])
    assert found[third.subject_id].cipher.open(third.cipher.seal(b"y", AAD), AAD) == b"y"
    assert _cached_refs(worker) == set()


def test_an_id_lookup_uses_an_entry_that_holds_the_same_id_without_unwrapping(
    serve: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject = serve.directory.ensure(REF, NOW)  # cached by the process that created it

    def no_unwrap(wrapped: bytes, aad: bytes) -> bytes:
        raise AssertionError("a fresh cache entry should have spared this unwrap")

    monkeypatch.setattr(serve.keys.keyring, "unwrap", no_unwrap)
    found = serve.directory.by_subject_ids([subject.subject_id])
    sealed = subject.cipher.seal(b"z", AAD)
    assert found[subject.subject_id].cipher.open(sealed, AAD) == b"z"
    assert _cached_refs(serve) == {REF}


def test_a_subject_made_just_after_an_erasure_that_raced_it_is_cached_again_at_its_next_read(
    serve: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An erasure that lands between `ensure`'s start and its insert (finding no row, it leaves a
    tombstone) marks the ref; the subject the insert then makes is legitimate. The mark kept it
    out of the cache for good, so every lookup read the row and unwrapped the key again. A mark
    now holds back only reads made before the erasure ended: the next read caches it."""
    directory = serve.directory
    directory.ensure(REF, NOW)
    directory.erase(REF, NOW)
    writer = serve._directory_db.writer
    commit = writer.run_sync

    def erased_just_before(fn: Any) -> Any:
        if getattr(fn, "__name__", "") == "insert":
            monkeypatch.setattr(writer, "run_sync", commit)
            directory.erase(REF, NOW)
        return commit(fn)

    monkeypatch.setattr(writer, "run_sync", erased_just_before)
    made = directory.ensure(REF, NOW)
    assert REF not in _cached_refs(serve)  # read before that erasure ended: not cached
    again = directory.resolve(REF)
    assert again is not None
    assert again.subject_id == made.subject_id
    assert REF in _cached_refs(serve)  # the next read is cached


def _statements(store: Store) -> list[str]:
    """The statements this thread's reader of the directory runs from now on."""
    ran: list[str] = []
    store._directory_db.reader().set_trace_callback(ran.append)
    return ran


def test_an_entry_past_its_age_is_vouched_for_by_the_count_of_erasures_without_its_row(
    serve: Store, worker: Store
) -> None:
    """While nobody is erased, a lookup past `max_age` reads one row, the count of erasures,
    however many refs it asks about, and trusts its entries for another `max_age`."""
    refs = [REF, *(f"sub_{n:052d}" for n in range(3))]
    made = {ref: serve.directory.ensure(ref, NOW).subject_id for ref in refs}
    directory = SubjectDirectory(serve._directory_db, serve.keys.keyring, max_age=0.0)
    assert {ref: s.subject_id for ref, s in directory.resolve_many(refs).items()} == made  # cached
    before = directory._cache[REF].read_at
    worker.directory.ensure("sub_" + "n" * 52, NOW)  # a new subject elsewhere erases nobody

    ran = _statements(serve)
    again = directory.resolve_many(refs)
    assert {ref: s.subject_id for ref, s in again.items()} == made
    assert ran == ["SELECT total FROM erasures_made"]
    assert directory._cache[REF].read_at > before  # trusted anew


def test_an_erasure_elsewhere_raises_the_count_and_is_seen_past_the_age(serve: Store, worker: Store) -> None:
    """`worker` stands for a second `serve` that cached the subject: the erasure through `serve`
    is seen at its next lookup past `max_age`, and so is the user's return as a new subject."""
    other = "sub_" + "b" * 52
    serve.directory.ensure(other, NOW)
    first = serve.directory.ensure(REF, NOW)
    directory = SubjectDirectory(serve._directory_db, worker.keys.keyring, max_age=0.0)
    found = directory.resolve(REF)
    assert found is not None
    assert found.subject_id == first.subject_id

    serve.directory.erase(REF, NOW)
    assert directory.resolve(REF) is None
    assert directory.resolve(other) is not None  # read again, still there

    second = serve.directory.ensure(REF, NOW)
    back = directory.resolve(REF)
    assert back is not None
    assert back.subject_id == second.subject_id != first.subject_id
    assert back.cipher.open(second.cipher.seal(b"new", AAD), AAD) == b"new"


def test_an_entry_vouched_for_does_not_replace_a_newer_one_cached_meanwhile(
    serve: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lookup that read the count before an erasure and a return elsewhere, while another
    thread's lookup cached the returned subject, leaves that newer entry in place."""
    directory = SubjectDirectory(serve._directory_db, serve.keys.keyring, max_age=0.0)
    first = directory.ensure(REF, NOW)
    count = directory._erasures_made
    returned = []

    def read_before_the_erasure() -> int:
        seen = count()
        monkeypatch.setattr(directory, "_erasures_made", count)
        serve.directory.erase(REF, NOW)
        returned.append(serve.directory.ensure(REF, NOW))
        assert directory.resolve(REF) is not None  # the other thread's lookup caches it
        return seen

    monkeypatch.setattr(directory, "_erasures_made", read_before_the_erasure)
    directory.resolve(REF)  # vouched for by the count it read: the erasure raced it
    assert directory._cache[REF].subject_id == returned[0].subject_id != first.subject_id


def test_only_the_erasure_of_a_live_subject_counts(serve: Store) -> None:
    def total() -> int:
        return int(serve._directory_db.reader().execute("SELECT total FROM erasures_made").fetchone()[0])

    serve.directory.erase(REF, NOW)  # nobody there: a tombstone, no key destroyed
    assert total() == 0
    serve.directory.ensure(REF, NOW)
    serve.directory.erase(REF, NOW)
    serve.directory.erase(REF, NOW)  # already gone
    assert total() == 1
    serve.directory.ensure(REF, NOW)
    serve.directory.erase(REF, NOW)
    assert total() == 2


def test_an_entry_past_its_age_is_read_again_after_an_erasure_and_keeps_its_key_without_an_unwrap(
    serve: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `max_age`, with a subject erased since the entry was read, the ref's row is read
    again; holding the same id, it is the same subject, and the key cached before serves (the
    rows a batch reads again are remembered together)."""
    directory = SubjectDirectory(serve._directory_db, serve.keys.keyring, max_age=0.0)
    subject = directory.ensure(REF, NOW)
    before = directory._cache[REF].read_at
    sealed = subject.cipher.seal(b"z", AAD)
    other = "sub_" + "b" * 52
    serve.directory.ensure(other, NOW)
    serve.directory.erase(other, NOW)
    ran = _statements(serve)

    def no_unwrap(wrapped: bytes, aad: bytes) -> bytes:
        raise AssertionError("the entry holds this id: its key should have served again")

    monkeypatch.setattr(serve.keys.keyring, "unwrap", no_unwrap)
    again = directory.resolve_many([REF])[REF]
    assert again.subject_id == subject.subject_id
    assert again.cipher.open(sealed, AAD) == b"z"
    assert any("FROM subjects" in statement for statement in ran)  # the row, read again
    assert directory._cache[REF].read_at > before  # trusted anew


def test_a_batch_read_that_an_erasure_raced_caches_the_other_subjects_only(
    serve: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows read together are remembered together, each judged by its own ref's erasure: one
    erased after the rows were read but before they were cached stays out, the others go in."""
    other = "sub_" + "b" * 52
    serve.directory.ensure(REF, NOW)
    serve.directory.ensure(other, NOW)
    directory = SubjectDirectory(serve._directory_db, serve.keys.keyring)  # nothing cached yet
    unwrap = serve.keys.keyring.unwrap

    def erased_meanwhile(wrapped: bytes, aad: bytes) -> bytes:
        monkeypatch.setattr(serve.keys.keyring, "unwrap", unwrap)
        directory.erase(other, NOW)
        return unwrap(wrapped, aad)

    monkeypatch.setattr(serve.keys.keyring, "unwrap", erased_meanwhile)
    directory.resolve_many([REF, other])
    assert set(directory._cache) == {REF}
