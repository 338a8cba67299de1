"""Which adapter serves which device platform, from the settings.

Every platform falls back to the file sink (JSON lines in the data dir), so a newcomer's
gateway delivers somewhere visible with no provider configured.
"""

from __future__ import annotations

from clients.delivery import (
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
from gateway.settings import Secret, Settings

__all__ = ["PLATFORMS", "build_adapters"]

PLATFORMS = ("fcm", "apns", "webpush", "webhook")


def build_adapters(settings: Settings) -> dict[str, DeliveryAdapter]:
    sink = FileSink(FileSinkConfig(path=settings.data_dir / "deliveries.jsonl"))
    adapters: dict[str, DeliveryAdapter] = dict.fromkeys(PLATFORMS, sink)
    if settings.delivery_webhook_url and settings.delivery_webhook_secret:
        adapters["webhook"] = WebhookAdapter(
            WebhookConfig(url=settings.delivery_webhook_url, secret=settings.delivery_webhook_secret)
        )
    if settings.fcm_service_account_file:
        adapters["fcm"] = FcmAdapter(
            FcmConfig(
                service_account=Secret(settings.fcm_service_account_file.read_text()),
                base_url=settings.fcm_base_url,
            )
        )
    if settings.apns_key_file and settings.apns_key_id and settings.apns_team_id and settings.apns_bundle_id:
        adapters["apns"] = ApnsAdapter(
            ApnsConfig(
                team_id=settings.apns_team_id,
                key_id=settings.apns_key_id,
                private_key=Secret(settings.apns_key_file.read_text()),
                bundle_id=settings.apns_bundle_id,
                base_url=settings.apns_base_url,
            )
        )
    if settings.webpush_vapid_key_file and settings.webpush_vapid_subject:
        adapters["webpush"] = WebPushAdapter(
            WebPushConfig(
                vapid_private_key=Secret(settings.webpush_vapid_key_file.read_text().strip()),
                vapid_subject=settings.webpush_vapid_subject,
            )
        )
    return adapters
