"""Everything a running gateway holds, built once from the settings and closed on shutdown."""

from __future__ import annotations

import asyncio
import logging
import math
import stat

from gateway.adapters import build_adapters
from gateway.auth import UserTokens
from gateway.batch_slots import BatchSlots
from gateway.clock import Clock, system_clock
from gateway.errors import Conflict
from gateway.metrics import Metrics
from gateway.services.api_keys import ApiKeyRegistry
from gateway.services.audit import AuditService
from gateway.services.campaigns import CampaignService
from gateway.services.complaints import ComplaintService
from gateway.services.devices import DeviceService
from gateway.services.dispatch import Dispatcher
from gateway.services.policy import PolicySource
from gateway.services.preferences import PreferenceCenter
from gateway.services.pushes import PushService
from gateway.services.rights import RightsService
from gateway.services.stats import StatsService
from gateway.settings import Settings, SettingsError
from gateway.signing import Signer
from gateway.user_writes import UserWrites
from storage import outbox
from storage.crypto import DecryptionError
from storage.keys import KeyStore
from storage.repositories import admin_log
from storage.store import Store, open_keystore

__all__ = ["Runtime", "ensure_data_dir", "load_keys"]

log = logging.getLogger("gateway")


def ensure_data_dir(settings: Settings) -> None:
    """Create the data dir, mode 0700 (it holds the databases and, in dev, the keys), or fail with
    an error of that setting: `Settings.check` cannot see every reason (a read-only or virtual file
    system, permissions) without creating it."""
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        where, why = settings.data_dir, exc.strerror or exc
        raise SettingsError(f"cannot create {where}: {why}", setting="data_dir") from None


def load_keys(settings: Settings) -> KeyStore:
    """The key store; dev keys are created only at the default location, never at a configured one."""
    if settings.keystore_file is None and not settings.keystore_path.exists():
        ensure_data_dir(settings)  # where the dev keys would go
    keys, created = open_keystore(settings.keystore_path, create=settings.keystore_file is None)
    if created:
        log.warning(
            "created DEVELOPMENT keys",
            extra={
                "path": str(keys.path),
                "advice": "set CGW_KEYSTORE_FILE to production keys before real use",
            },
        )
    elif keys.path.stat().st_mode & stat.S_IROTH:
        # Served, not refused as one anyone may write is: an orchestrator mounts secrets 0644
        # unless told otherwise, where no other user may be. Said, since elsewhere it is not so.
        log.warning(
            "the key store is readable by anyone",
            extra={"path": str(keys.path), "advice": "chmod 600: it holds every key"},
        )
    return keys


def user_tokens(settings: Settings, keys: KeyStore) -> UserTokens:
    if settings.jwt_public_key_file is not None:
        return UserTokens(audience=settings.jwt_audience, public_key_file=settings.jwt_public_key_file)
    secret = settings.jwt_secret.reveal() if settings.jwt_secret else keys.jwt_dev_secret
    return UserTokens(audience=settings.jwt_audience, secret=secret)


class Runtime:
    def __init__(
        self, settings: Settings, clock: Clock = system_clock, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        ensure_data_dir(settings)
        keys = load_keys(settings)
        self.keys = keys
        self.store = Store(settings.data_dir, keys)
        self.signer = Signer(keys.signing)
        self.user_tokens = user_tokens(settings, keys)
        self.api_keys = ApiKeyRegistry(self.store, clock)
        self.policy = PolicySource(self.store, clock)
        self.preferences = PreferenceCenter(self.store, clock, self.signer, settings, self.policy)
        self.devices = DeviceService(self.store, clock)
        self.devices.tag_untagged()
        self.rights = RightsService(self.store, clock, self.preferences)
        self.user_writes = UserWrites(settings.user_writes_per_hour, clock)
        self.batch_slots = BatchSlots(settings.max_concurrent_batches)
        if finished := self.rights.finish_pending_erasures():
            log.warning("finished erasures cut short after the key went", extra={"count": finished})
        self.metrics = metrics or Metrics()
        self.metrics.damaged_pages.set_function(lambda: self.store.damaged_page_errors)
        self.metrics.outbox_behind.set_function(self._outbox_behind)
        self.pushes = PushService(self.store, clock, settings, self.policy, self.metrics)
        self.campaigns = CampaignService(self.store, clock)
        self.complaints = ComplaintService(self.store, clock, self.policy, self.preferences, self.metrics)
        self.stats = StatsService(self.store)
        self.audit = AuditService(self.store, clock, self.signer)
        self.adapters = build_adapters(settings, clock)
        self.dispatcher = Dispatcher(self.store, clock, settings, self.policy, self.metrics, self.adapters)
        self._rotation = asyncio.Lock()

    def _outbox_behind(self) -> float:
        """Seconds the outbox's earliest push is past due, read at each scrape (one index step).
        A read that fails (a damaged page) is NaN, not a failed `/metrics`."""
        try:
            due = outbox.earliest_due(self.store.data.reader())
        except Exception:
            return math.nan
        return 0.0 if due is None else max(0.0, (self.clock() - due).total_seconds())

    async def rotate_encryption_key(self, actor: str) -> tuple[str, int]:
        """A new key-encryption key, then every data key re-wrapped under it while serving, and
        who did it in the admin log. One rotation at a time: a second request waits and then
        rotates again, rather than re-wrapping alongside the first (the key store's own lock keeps
        the key file whole either way)."""
        async with self._rotation:
            try:
                kid = await asyncio.to_thread(self.keys.add_kek)
            except OSError as exc:  # the old key store stands: nothing was added, nothing re-wrapped
                raise Conflict(
                    f"the key store cannot be written ({exc.strerror or type(exc).__name__}): nothing "
                    "was rotated; rotation needs a writable CGW_KEYSTORE_FILE and room beside it"
                ) from None
            try:
                rewrapped = await self._rewrap(actor, kid)
            except DecryptionError:
                # One data key that does not open ends the pass (skipping it would leave the old key
                # wrapping only keys that do not open, which the next start takes for a wrong key
                # store): said as a conflict to resolve, not a 500.
                raise Conflict(
                    f"{kid} is active, but a data key in subjects.db does not open (a damaged page, a row "
                    "changed by hand), so the data keys after it are still wrapped under the previous key; "
                    "each start tries again. Run consent-gateway audit verify and check subjects.db"
                ) from None
            # A security event an operator reads in the log too, not only in the admin log's table.
            log.warning(
                "key-encryption key rotated", extra={"kek": kid, "rewrapped": rewrapped, "actor": actor}
            )
            return kid, rewrapped

    async def finish_rotation(self) -> None:
        """Run at start (`serve`): a rotation cut short (a crash, an unwrap that failed mid-pass)
        left data keys wrapped only under the key it replaced, the one an operator rotates away
        from when it leaked, and no entry in the admin log, so nothing said so. It is finished
        here, logged with `gateway` as its actor. Off the event loop's back, while serving; a
        failure is logged and leaves it for the next start or rotation."""
        async with self._rotation:
            try:
                if not await asyncio.to_thread(self.store.rotation_unfinished):
                    return
                log.warning("a key rotation was not finished: re-wrapping the data keys it left")
                await self._rewrap("gateway", self.keys.keyring.active)
            except Exception as exc:  # serving goes on; the keys left still open under the old key
                log.error("finishing a key rotation failed", extra={"error": type(exc).__name__})

    async def follow_signing_key(self, every: float) -> None:
        """Until cancelled: every `every` seconds, a signing key deployed in the key store since
        (a new key retiring the one in use, or retired keys added or dropped) is taken up, so
        that processes serving one data dir sign with, and publish, the same keys within a
        second of one another, not each from its own restart. A key store a start would refuse
        is not taken (`Store.take_up_signing_key`)."""
        while True:
            await asyncio.sleep(every)
            try:
                await self._take_up_signing_key()
            except Exception as exc:  # a busy or full directory: looked at again next time
                log.warning("taking up a new signing key failed", extra={"error": type(exc).__name__})

    async def _take_up_signing_key(self) -> None:
        key = await self.store.take_up_signing_key()
        if key is None:
            return
        self.signer.use(key)
        log.warning(
            "signing with the key store's signing key",
            extra={"kid": key.kid, "retired": [retired.kid for retired in key.retired]},
        )

    async def _rewrap(self, actor: str, kid: str) -> int:
        """Every data key re-wrapped under the active key, the keys no data key uses any more
        forgotten, and the rotation in the admin log; returns how many were re-wrapped."""
        rewrapped = await asyncio.to_thread(self.store.directory.rewrap_all)
        await asyncio.to_thread(self.store.forget_unused_wrapping_keys)
        now = self.clock()
        await self.store.data.writer.run(
            lambda conn: admin_log.record(
                conn, now, actor, "encryption_key.rotated", kid, {"rewrapped": rewrapped}
            )
        )
        return rewrapped

    async def aclose(self) -> None:
        for adapter in {id(a): a for a in self.adapters.values()}.values():
            await adapter.aclose()
        self.close()

    def close(self) -> None:
        self.store.close()
