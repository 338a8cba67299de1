"""Devices and location: the two things a push is aimed at."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from functools import partial

from clients.delivery.token_hint import token_hint
from gateway.clock import Clock, rfc3339, rfc3339_text
from gateway.errors import Conflict, NotFound
from gateway.schemas.me import DeviceCreate, DeviceRead, LocationRead, LocationUpdate
from policies import geohash
from storage.connections import Connection, savepoint
from storage.directory import SubjectKey
from storage.repositories import consents, devices, locations
from storage.store import Store

__all__ = ["MAX_ACTIVE_DEVICES", "DeviceService"]

log = logging.getLogger("gateway.devices")

MAX_ACTIVE_DEVICES = 10
LOCATION_PRECISION = 6


class DeviceService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def register(self, subject_ref: str, body: DeviceCreate) -> tuple[str, bool]:
        """(device id, created): the same token registered again is the same device; for webpush,
        the same endpoint, whatever the JSON's spelling, and with the keys last given; for apns,
        the same hex in the upper case a row stored before may hold."""
        now = self._clock()
        tag = devices.token_tag(self._store.device_tags, body.platform, body.token)
        earlier = devices.earlier_spellings(body.platform, body.token)
        earlier_tags = [devices.token_tag(self._store.device_tags, body.platform, t) for t in earlier]

        def check_room(conn: Connection, key: SubjectKey) -> None:
            if devices.count_active(conn, key.subject_id) >= MAX_ACTIVE_DEVICES:
                raise Conflict(f"at most {MAX_ACTIVE_DEVICES} active devices per user", "token")

        def register(conn: Connection, key: SubjectKey) -> tuple[str, bool]:
            found = devices.find(conn, key, body.platform, body.token)
            if found is None:
                check_room(conn, key)
                return devices.insert(conn, key, body.platform, body.token, tag, now), True
            devices.registered(conn, found.device_id, tag, now)
            for duplicate in found.duplicates:
                # One Web Push subscription registered twice before its endpoint named it.
                devices.delete(conn, key.subject_id, duplicate)
            if found.status != "active":
                check_room(conn, key)
                # Registering a token the provider once called invalid again means the app has it back.
                devices.set_status(conn, found.device_id, "active", now)
            if not found.current:
                # New keys at the same endpoint (pushes to the old ones no longer decrypt), or
                # a subscription stored before in the form it came in.
                devices.refresh(conn, key, found.device_id, body.platform, body.token)
            return found.device_id, False

        def unit(conn: Connection, key: SubjectKey) -> tuple[str, bool] | Conflict:
            # The device is this user's now: another user who registered it (a logout and another
            # login on the same install) no longer gets pushes on it, their payments included.
            # Kept even when this user has no room for another device: only the registration is
            # undone. One unit with it, not two: an erasure of this user whose cleanup ran between
            # them left the device row, naming the erased subject, behind it.
            for each in (tag, *earlier_tags):
                devices.release_elsewhere(conn, each, key.subject_id, now)
            try:
                with savepoint(conn, "device"):
                    return register(conn, key)
            except Conflict as no_room:
                return no_room

        done = await self._store.write_as(subject_ref, now, unit)
        if isinstance(done, Conflict):
            raise done
        return done

    def tag_untagged(self, batch: int = 500) -> int:
        """At start: tag the devices stored before tags were kept, and take each device two
        subjects had registered from the one who did not register it last. Their tokens are
        sealed under each subject's own key, so no migration could: a device two users had both
        registered before the upgrade stayed with both, the current holder's app re-registering
        never finding the other's row. Each batch is tagged and released in one transaction, so
        a crash between them leaves no pair shared. Returns how many rows were tagged; a scan
        of the table once all are."""
        reader = self._store.data.reader()
        if not devices.any_untagged(reader):
            return 0
        tagged = released = 0
        after, now = "", self._clock()
        while rows := devices.untagged(reader, after, batch):
            after = rows[-1][0]
            keys = self._store.directory.by_subject_ids({subject_id for _, subject_id, _, _ in rows})
            counts = self._store.data.writer.run_sync(partial(self._tag_batch, keys=keys, rows=rows, now=now))
            tagged, released = tagged + counts[0], released + counts[1]
        log.warning("devices stored before tags were tagged", extra={"tagged": tagged, "released": released})
        return tagged

    def _tag_batch(
        self,
        conn: Connection,
        keys: Mapping[str, SubjectKey],
        rows: list[tuple[str, str, str, bytes]],
        now: datetime,
    ) -> tuple[int, int]:
        """(tagged, released) for one batch of untagged rows."""
        given = devices.tag(conn, self._store.device_tags, keys, rows)
        return len(given), devices.release_shared(conn, given, now)

    def list(self, subject_ref: str) -> list[DeviceRead]:
        key = self._store.directory.resolve(subject_ref)
        if key is None:
            return []
        return [
            DeviceRead(
                d.device_id,
                d.platform,  # type: ignore[arg-type]
                token_hint(d.platform, d.token),
                d.status,  # type: ignore[arg-type]
                rfc3339_text(d.created_at),
            )
            for d in devices.list_for(self._store.data.reader(), key)
        ]

    async def remove(self, subject_ref: str, device_id: str) -> None:
        key = self._store.directory.resolve(subject_ref)
        removed = key is not None and await self._store.data.writer.run(
            lambda conn: devices.delete(conn, key.subject_id, device_id)
        )
        if not removed:
            raise NotFound("no such device", "device_id")

    async def set_location(self, subject_ref: str, body: LocationUpdate) -> LocationRead:
        now = self._clock()
        key = self._store.directory.resolve(subject_ref)
        cell = geohash.encode(body.lat, body.lon, LOCATION_PRECISION)

        def unit(conn: Connection) -> None:
            # Checked inside the write so a concurrent withdrawal cannot slip between check and write,
            # nor an erasure through another process, whose subject this one's cache may still hold.
            live = key is not None and self._store.directory.holds(key.subject_id)
            row = consents.current(conn, key.subject_id).get("location") if key and live else None
            if key is None or row is None or not row.granted:
                raise Conflict("location consent is not granted", "location")
            locations.put(conn, key, cell, now)

        await self._store.data.writer.run(unit)
        return LocationRead(cell, LOCATION_PRECISION, rfc3339(now))
