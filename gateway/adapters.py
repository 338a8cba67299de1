"""Which adapter serves which device platform, from the settings.

A platform with no provider configured falls back to the file sink (JSON lines in the data
dir), so a newcomer's gateway delivers somewhere visible. A provider configured only in part,
or with a credential file its adapter cannot use, is a `SettingsError`, never that fallback:
the file sink reports `delivered`, so real users' pushes would be marked delivered unsent.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm

from clients.delivery import (
    LONGEST_SEND_SECONDS,
    ApnsAdapter,
    ApnsConfig,
    DeliveryAdapter,
    FcmAdapter,
    FcmConfig,
    FileSink,
    FileSinkConfig,
    WebhookAdapter,
    WebhookConfig,
    WebPushAdapter,
    WebPushConfig,
)
from gateway.clock import Clock, system_clock
from gateway.settings import Secret, Settings, SettingsError

__all__ = ["PLATFORMS", "build_adapters", "check_credentials"]

PLATFORMS = ("fcm", "apns", "webpush", "webhook")
HTTP1_PROVIDERS = ("fcm", "webpush", "webhook")
OTHER_FILES = 1024
"""Files the process needs besides the HTTP/1.1 clients' connections: the server's own sockets,
SQLite's files, APNs' HTTP/2 connections, logs."""

log = logging.getLogger("gateway.adapters")


def build_adapters(settings: Settings, clock: Clock = system_clock) -> dict[str, DeliveryAdapter]:
    """The adapters run on the gateway's `clock`, the one it computed each push's `expires_at`
    by: FCM's expiry check and TTL, APNs' and Web Push's token times, the webhook's signed
    timestamp."""
    sink = FileSink(FileSinkConfig(path=settings.data_dir / "deliveries.jsonl"))
    providers = _providers(settings, clock)
    _make_room_for(sum(p in providers for p in HTTP1_PROVIDERS) * 2 * settings.worker_concurrency)
    if providers and settings.worker_lease_seconds < 2 * LONGEST_SEND_SECONDS:
        # Not refused: a deployment may choose it. But a round starts sends until only the longer
        # of a send's longest and half the lease is left: under twice a send's longest, a slow
        # send may outlast its lease and be claimed and sent again by another worker.
        log.warning(
            "CGW_WORKER_LEASE_SECONDS is under twice a send's longest: a slow send may be claimed "
            "and sent again by another worker before it ends",
            extra={
                "lease_seconds": settings.worker_lease_seconds,
                "longest_send_seconds": LONGEST_SEND_SECONDS,
            },
        )
    return dict.fromkeys(PLATFORMS, sink) | providers


def _make_room_for(connections: int) -> None:
    """Each HTTP/1.1 client keeps up to `worker_concurrency` connections in flight and as many idle
    (Web Push talks to many hosts). A soft limit on open files below what that needs (1024 is a
    common default) is raised toward the hard limit, as Go's runtime does at start: at the limit,
    not only the sends fail but the server's accepts and SQLite's opens too."""
    needed = connections + OTHER_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # a sandbox may refuse even what the hard limit allows
            target = soft
    if target < needed:
        log.warning(
            "open-files limit below what the delivery connections may need; lower CGW_WORKER_CONCURRENCY "
            "or raise the hard limit",
            extra={"limit": target, "needed": needed},
        )


def check_credentials(settings: Settings) -> None:
    """Load each configured provider's credentials the way its adapter does, so that
    `Settings.check` refuses a file the adapter cannot use before anything is created.
    The adapters built here are dropped unused: building one opens no connection."""
    _providers(settings, system_clock)


def _unix_seconds(clock: Clock) -> Callable[[], float]:
    """The gateway's clock as the delivery adapters take one: Unix seconds."""
    return lambda: clock().timestamp()


def _providers(settings: Settings, clock: Clock) -> dict[str, DeliveryAdapter]:
    for platform in PLATFORMS:  # settings built without `check` (tests, embedders) are refused too
        settings.configured(platform)
    adapters: dict[str, DeliveryAdapter] = {}
    seconds = _unix_seconds(clock)
    # A round's sends to one provider go at once: as many connections as pushes in a round.
    connections = settings.worker_concurrency
    if settings.delivery_webhook_url and settings.delivery_webhook_secret:
        adapters["webhook"] = WebhookAdapter(
            WebhookConfig(
                url=settings.delivery_webhook_url,
                secret=settings.delivery_webhook_secret,
                connections=connections,
            ),
            clock=seconds,
        )
    if settings.fcm_service_account_file:
        base_url = settings.fcm_base_url
        adapters["fcm"] = _from_file(
            "CGW_FCM_SERVICE_ACCOUNT_FILE",
            settings.fcm_service_account_file,
            lambda text: FcmAdapter(
                FcmConfig(service_account=Secret(text), base_url=base_url, connections=connections),
                clock=seconds,
            ),
        )
    if settings.apns_key_file and settings.apns_key_id and settings.apns_team_id and settings.apns_bundle_id:
        team_id, key_id, bundle_id = settings.apns_team_id, settings.apns_key_id, settings.apns_bundle_id
        adapters["apns"] = _from_file(
            "CGW_APNS_KEY_FILE",
            settings.apns_key_file,
            lambda text: ApnsAdapter(
                ApnsConfig(
                    team_id=team_id,
                    key_id=key_id,
                    private_key=Secret(text),
                    bundle_id=bundle_id,
                    base_url=settings.apns_base_url,
                ),
                clock=seconds,
            ),
        )
    if settings.webpush_vapid_key_file and settings.webpush_vapid_subject:
        subject = settings.webpush_vapid_subject
        adapters["webpush"] = _from_file(
            "CGW_WEBPUSH_VAPID_KEY_FILE or CGW_WEBPUSH_VAPID_SUBJECT",  # the adapter checks both
            settings.webpush_vapid_key_file,
            lambda text: WebPushAdapter(
                WebPushConfig(
                    vapid_private_key=Secret(text.strip()), vapid_subject=subject, connections=connections
                ),
                clock=seconds,
            ),
        )
    return adapters


def _from_file(var: str, path: Path, build: Callable[[str], DeliveryAdapter]) -> DeliveryAdapter:
    """An adapter built from a credential file; a file it cannot use is a SettingsError naming
    `var`. Its message says what is wrong (the adapters' errors never quote key material)."""
    try:
        return build(path.read_text())
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SettingsError(f"{var}: cannot use {path}: {exc}") from None
