"""API keys for services, auditors and admins; verified on every request, so cached."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

from gateway.auth import SCOPES
from gateway.clock import Clock
from gateway.errors import Conflict, InvalidInput, NotFound
from storage.db import Connection
from storage.repositories import api_keys as repo
from storage.repositories.api_keys import ApiKey
from storage.store import Store

__all__ = ["ApiKeyRegistry"]


class ApiKeyRegistry:
    """Positive verifications are cached by a hash of the presented key; revocation through
    this registry evicts at once. (A key revoked by another process is honoured on restart.)"""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._cache: dict[bytes, ApiKey] = {}
        self._lock = threading.Lock()

    def verify(self, presented: str) -> ApiKey | None:
        digest = hashlib.sha256(presented.encode()).digest()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None:
            return hit
        key = repo.verify(self._store.data.reader(), presented)
        if key is not None:
            with self._lock:
                self._cache[digest] = key
        return key

    def create_sync(self, name: str, scopes: tuple[str, ...]) -> tuple[ApiKey, str]:
        return self._store.data.writer.run_sync(self._creation(name, scopes))

    async def create(self, name: str, scopes: tuple[str, ...]) -> tuple[ApiKey, str]:
        return await self._store.data.writer.run(self._creation(name, scopes))

    def _creation(self, name: str, scopes: tuple[str, ...]) -> Callable[[Connection], tuple[ApiKey, str]]:
        """The writer unit that creates a key, scopes checked first (for the CLI and the admin route)."""
        check_scopes(scopes)
        now = self._clock()
        return lambda conn: repo.create(conn, name=name, scopes=scopes, now=now)

    async def revoke(self, key_id: str) -> None:
        """Refuses to revoke the last live admin key: without one, keys, policy and rotation are
        out of reach over HTTP, and only the CLI on the server could make another."""
        now = self._clock()

        def unit(conn: Connection) -> bool:
            if repo.live_with_scope(conn, "admin") == [key_id]:
                raise Conflict("this is the last admin key: create another before revoking it", "key_id")
            return repo.revoke(conn, key_id, now)

        if not await self._store.data.writer.run(unit):
            raise NotFound("no such live API key", "key_id")
        with self._lock:
            self._cache = {d: k for d, k in self._cache.items() if k.key_id != key_id}


def check_scopes(scopes: tuple[str, ...]) -> None:
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise InvalidInput(f"scopes must be a non-empty subset of {', '.join(SCOPES)}", "scopes")
