"""The policy settings in force: cached in memory, versioned in storage, changed by admins; and
any version, superseded or not, for auditors reading what a decision was judged by."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.clock import Clock, rfc3339_text_or_none
from gateway.errors import InvalidInput, NotFound, PreconditionFailed
from gateway.schemas.audit import PolicyVersionRead
from gateway.services.campaign_rule import judge_all
from policies import content_key
from policies.settings import RESERVED_DATA_KEY, PolicySettings
from storage.connections import Connection
from storage.repositories import admin_log
from storage.repositories import policy as policy_repo
from storage.repositories.policy import PolicyVersion
from storage.store import Store

__all__ = ["PolicySource", "policy_etag"]


class PolicySource:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self.version: PolicyVersion = policy_repo.current(store.data.reader())
        self._keyed: tuple[PolicyVersion, bytes] | None = None

    @property
    def settings(self) -> PolicySettings:
        return self.version.settings

    @property
    def content_key(self) -> bytes:
        """`policies.content_key` of the settings in force: what submission stores with an
        accepted push and dispatch compares it to. Worked out once per version read (~4 us)."""
        keyed = self._keyed
        if keyed is None or keyed[0] is not self.version:
            keyed = self._keyed = (self.version, content_key(self.version.settings))
        return keyed[1]

    def refresh(self, conn: Connection) -> None:
        """Catch up with a change another process made (`PUT /v1/admin/policy` is served by
        `serve`; a `consent-gateway worker` beside it would otherwise judge pushes by the rules
        it started with): one read of the newest version's number and time, the settings only if
        they moved. The time too: a version this process read in a writer group that was rolled
        back is not in storage, and another process may commit different settings under its
        number."""
        self.version = self._newest_version(conn)

    def newest(self, conn: Connection) -> PolicySettings:
        """The settings in force as stored now, without catching this source up (`refresh`): for
        what only shows them, which may run off the event loop (an export), where assigning
        `version` could change it under a push unit between its reads of the settings and of
        `content_key`."""
        return self._newest_version(conn).settings

    def _newest_version(self, conn: Connection) -> PolicyVersion:
        """The version in force as stored: the one held if storage's newest is still it (one read
        of its number and time), else read whole."""
        version = self.version
        if policy_repo.newest(conn) == (version.version, version.changed_at):
            return version
        return policy_repo.current(conn)

    def read_version(self, version: int) -> PolicyVersionRead:
        """Version `version` as stored (the Audit API's `GET /v1/audit/policy/versions/{version}`)."""
        found = policy_repo.stored(self._store.data.reader(), version)
        if found is None:
            raise NotFound("no policy version with this number", "version")
        return PolicyVersionRead(
            version=found.version,
            settings=msgspec.json.decode(found.settings, type=dict[str, Any]),
            changed_by=found.changed_by,
            changed_at=rfc3339_text_or_none(found.changed_at),
        )

    async def change(
        self, settings: PolicySettings, changed_by: str, if_match: frozenset[str] | None
    ) -> PolicyVersion:
        """Put `settings` in force as the next version. With `if_match` (entity tags), only if the
        newest version's tag is among them, checked in the writing transaction: of two admins who
        read version 7 and both change it, the second is refused rather than silently undoing
        the first."""
        for topic, keys in settings.allowed_data_keys.items():
            for index, key in enumerate(keys):
                field = f"allowed_data_keys.{topic}[{index}]"
                if RESERVED_DATA_KEY.match(key):
                    raise InvalidInput(f"{field}: `{key}` is kept by a push service or the gateway", field)
                if key in keys[:index]:  # a version that differs from the last by a repeat alone
                    raise InvalidInput(f"{field}: `{key}` is listed twice", field)
        now = self._clock()

        def put(conn: Connection) -> PolicyVersion:
            newest, _ = policy_repo.newest(conn)
            if if_match is not None and policy_etag(newest) not in if_match:
                raise PreconditionFailed(
                    f"the policy is at version {newest}, not the one If-Match names: read it again",
                    "If-Match",
                )
            held = policy_repo.current(conn)
            if held.version > 0 and held.settings == settings:
                # The same settings again (a tool applying its desired state on a timer): no new
                # version and no admin-log entry, as a PUT is idempotent (RFC 9110, 9.2.2). Not
                # for version 0, the running defaults: a PUT of them pins them against upgrades.
                return held
            version = policy_repo.put(conn, settings, changed_by, now)
            admin_log.record(conn, now, changed_by, "policy.changed", str(version.version))
            # A threshold lowered puts campaigns over it: paused now, not after more deliveries.
            judge_all(conn, settings, now)
            return version

        try:
            self.version = await self._store.data.writer.run(put)
        except PreconditionFailed:
            self.refresh(self._store.data.reader())  # another process moved it: learn its version
            raise
        return self.version


def policy_etag(version: int) -> str:
    """A policy version as an entity tag (RFC 9110: opaque, quoted)."""
    return f'"{version}"'
