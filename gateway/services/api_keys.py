"""API keys for services, auditors and admins; verified on every request, so cached briefly."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import msgspec

from gateway.clock import Clock
from gateway.errors import Conflict, InvalidInput, NotFound
from gateway.schemas.admin import KeyName
from gateway.scopes import SCOPES
from policies.pii import find_pii_in_label
from storage.connections import Connection
from storage.repositories import admin_log
from storage.repositories import api_keys as repo
from storage.repositories.api_keys import ApiKey
from storage.store import Store

__all__ = ["MAX_AGE_SECONDS", "SEPARATE", "ApiKeyRegistry", "check_name", "check_scopes"]

# How long a positive verification is trusted before the key is read again: the longest a key
# revoked by another process (a second `serve` on the same data dir) still works here. A hit costs
# a dict lookup; the read it spares is ~7 us, paid now once per key in use per second instead of
# on every request (the push path runs a few hundred us of work on the same thread).
MAX_AGE_SECONDS = 1.0
# Scopes no one key may hold together: operators and auditors are different people.
SEPARATE = frozenset({"admin", "audit:read"})


class ApiKeyRegistry:
    """Positive verifications are cached by a hash of the presented key, each for at most
    `max_age` seconds of monotonic time (a wall clock stepped back would stretch it): revocation
    through this registry evicts at once, and one made by another process is honoured within
    `max_age`. Refusals are not cached, so a key created elsewhere works at once."""

    def __init__(self, store: Store, clock: Clock, max_age: float = MAX_AGE_SECONDS) -> None:
        self._store = store
        self._clock = clock
        self._max_age = max_age
        self._cache: dict[bytes, tuple[ApiKey, float]] = {}  # digest -> (key, monotonic read time)
        self._lock = threading.Lock()

    def verify(self, presented: str) -> ApiKey | None:
        digest = hashlib.sha256(presented.encode()).digest()
        read_at = time.monotonic()  # taken before the read, so an age never understates its data's
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and read_at - hit[1] < self._max_age:
            return hit[0]
        key = repo.verify(self._store.data.reader(), presented)
        with self._lock:
            if key is None:
                self._cache.pop(digest, None)
            else:
                self._cache[digest] = (key, read_at)
        return key

    def list(self) -> list[ApiKey]:
        """Every key ever made, oldest first, revoked ones with their time: after a suspected
        leak, which keys are live, and with what scopes."""
        return repo.list_keys(self._store.data.reader())

    def create_sync(
        self,
        name: str,
        scopes: tuple[str, ...],
        actor: str = "cli",
        show: Callable[[str], None] = lambda secret: None,
    ) -> tuple[ApiKey, str]:
        """`keys create`'s path: the actor is whoever runs commands on the server. `show` writes
        the secret out inside the unit, so a key whose secret could not be written (a full disk,
        a closed pipe) is undone rather than left live with a secret nobody saw."""
        creation = self._creation(name, scopes, actor)

        def unit(conn: Connection) -> tuple[ApiKey, str]:
            key, secret = creation(conn)
            show(secret)
            return key, secret

        return self._store.data.writer.run_sync(unit)

    async def create(self, name: str, scopes: tuple[str, ...], actor: str) -> tuple[ApiKey, str]:
        """The admin route's path. It issues no `audit:read` key: an operator holding an admin
        key could otherwise make one and read the audit routes with it, the separation that no
        key holding both scopes keeps. Auditors' keys come from `keys create` on the server."""
        if "audit:read" in scopes:
            raise InvalidInput(
                "scopes: an admin key does not issue `audit:read` keys; an auditor's key is made "
                "with `consent-gateway keys create` on the server",
                "scopes",
            )
        return await self._store.data.writer.run(self._creation(name, scopes, actor))

    def _creation(
        self, name: str, scopes: tuple[str, ...], actor: str
    ) -> Callable[[Connection], tuple[ApiKey, str]]:
        """The writer unit that creates a key and logs who did, name and scopes checked first (for
        the CLI and the admin route)."""
        check_name(name)
        check_scopes(scopes)
        now = self._clock()

        def unit(conn: Connection) -> tuple[ApiKey, str]:
            key, secret = repo.create(conn, name=name, scopes=scopes, now=now)
            admin_log.record(conn, now, actor, "api_key.created", key.key_id, {"scopes": list(key.scopes)})
            return key, secret

        return unit

    async def revoke(self, key_id: str, actor: str) -> None:
        """Refuses to revoke the last live admin key: without one, keys, policy and rotation are
        out of reach over HTTP, and only the CLI on the server could make another."""
        now = self._clock()

        def unit(conn: Connection) -> bool:
            if repo.live_with_scope(conn, "admin") == [key_id]:
                raise Conflict("this is the last admin key: create another before revoking it", "key_id")
            revoked = repo.revoke(conn, key_id, now)
            if revoked:
                admin_log.record(conn, now, actor, "api_key.revoked", key_id)
            return revoked

        if not await self._store.data.writer.run(unit):
            raise NotFound("no such live API key", "key_id")
        with self._lock:
            self._cache = {d: hit for d, hit in self._cache.items() if hit[0].key_id != key_id}


def check_name(name: str) -> None:
    """The one check of a key's name for the admin route and `keys create`, which takes it from the
    command line, where "", 5,000 characters, a newline or "<script>" went into key lists unchecked."""
    try:
        msgspec.convert(name, type=KeyName)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"name: 1-100 letters, digits, spaces or any of _ . : - ({exc})", "name") from None
    # Kept in clear and listed to every admin, like a campaign name: the pattern lets a phone,
    # card or resident id number through.
    if kinds := find_pii_in_label(name):
        raise InvalidInput(f"name: a key name must not hold personal data ({', '.join(kinds)})", "name")


def check_scopes(scopes: tuple[str, ...]) -> None:
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise InvalidInput(f"scopes must be a non-empty subset of {', '.join(SCOPES)}", "scopes")
    if set(scopes) >= SEPARATE:
        # Operators cannot read the audit routes with an admin key (PRODUCT.md, SECURITY.md);
        # a key holding both would let them, whoever it was issued to.
        raise InvalidInput(
            "scopes: `admin` and `audit:read` are never given to one key; an auditor gets a key of their own",
            "scopes",
        )
