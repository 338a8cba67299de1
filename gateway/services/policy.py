"""The policy settings in force: cached in memory, versioned in storage, changed by admins."""

from __future__ import annotations

from gateway.clock import Clock
from policies.settings import PolicySettings
from storage.db import Connection
from storage.repositories import policy as policy_repo
from storage.repositories.policy import PolicyVersion
from storage.store import Store

__all__ = ["PolicySource"]


class PolicySource:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self.version: PolicyVersion = policy_repo.current(store.data.reader())

    @property
    def settings(self) -> PolicySettings:
        return self.version.settings

    def refresh(self, conn: Connection) -> None:
        """Catch up with a change another process made (`PUT /v1/admin/policy` is served by
        `serve`; a `consent-gateway worker` beside it would otherwise judge pushes by the rules
        it started with): one read of the newest version number, the settings only if it moved."""
        if policy_repo.newest_version(conn) != self.version.version:
            self.version = policy_repo.current(conn)

    async def change(self, settings: PolicySettings, changed_by: str) -> PolicyVersion:
        now = self._clock()
        self.version = await self._store.data.writer.run(
            lambda conn: policy_repo.put(conn, settings, changed_by, now)
        )
        return self.version
