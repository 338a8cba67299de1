"""The one settings object, read once from `CGW_` environment variables and frozen.

Every entry point (server, worker, CLI) calls `Settings.from_env(os.environ)`, so the same
variables mean the same thing everywhere. A bad value is a `SettingsError` naming the
variable; the CLI turns it into one line on stderr and exit status 2.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import msgspec

from gateway.timezones import is_iana_zone

__all__ = ["Secret", "Settings", "SettingsError"]

LogLevel = Literal["debug", "info", "warning", "error"]


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


class Secret:
    """A string whose repr never shows its value, so settings can be logged safely."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path = Path("data")
    keystore_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    jwt_secret: Secret | None = None
    jwt_public_key_file: Path | None = None
    jwt_audience: str = "consent-gateway"
    timezone: str = "UTC"
    controller: str = "Consent Gateway operator"
    jurisdiction: str = "CN"
    delivery_webhook_url: str | None = None
    delivery_webhook_secret: Secret | None = None
    fcm_service_account_file: Path | None = None
    fcm_base_url: str = "https://fcm.googleapis.com"
    apns_key_file: Path | None = None
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_bundle_id: str | None = None
    apns_base_url: str = "https://api.push.apple.com"
    webpush_vapid_key_file: Path | None = None
    webpush_vapid_subject: str | None = None
    max_body_bytes: int = 64 * 1024
    worker_enabled: bool = True
    worker_concurrency: int = 64
    worker_lease_seconds: int = 60
    delivery_max_attempts: int = 8
    delivery_backoff_seconds: float = 1.0
    delivery_breaker_threshold: int = 5
    delivery_breaker_cooldown_seconds: float = 30.0
    log_level: LogLevel = "info"

    @property
    def keystore_path(self) -> Path:
        return self.keystore_file or self.data_dir / "keys.json"

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> Settings:
        """Build settings from a mapping of `CGW_*` variables; `overrides` win (CLI flags, tests)."""
        values: dict[str, object] = {}
        for name, parse in _PARSERS.items():
            var = "CGW_" + name.upper()
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[name] = parse(raw)
            except (ValueError, TypeError) as exc:
                raise SettingsError(f"{var}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        """Cross-field rules that a single variable's parser cannot see."""
        if self.jwt_secret is not None and self.jwt_public_key_file is not None:
            raise SettingsError("CGW_JWT_SECRET and CGW_JWT_PUBLIC_KEY_FILE: set one, not both")
        if self.jwt_secret is not None and len(self.jwt_secret.reveal()) < 32:
            raise SettingsError("CGW_JWT_SECRET: must be at least 32 characters for HS256")
        if self.jwt_public_key_file is not None and not self.jwt_public_key_file.is_file():
            raise SettingsError(f"CGW_JWT_PUBLIC_KEY_FILE: no such file: {self.jwt_public_key_file}")
        if (self.delivery_webhook_url is None) != (self.delivery_webhook_secret is None):
            raise SettingsError(
                "CGW_DELIVERY_WEBHOOK_URL and CGW_DELIVERY_WEBHOOK_SECRET: set both or neither"
            )


def _port(raw: str) -> int:
    port = int(raw)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    return port


def _zone(raw: str) -> str:
    if not is_iana_zone(raw):
        raise ValueError(f"unknown IANA time zone: {raw!r}")
    return raw


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return raw


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _log_level(raw: str) -> str:
    if raw not in {"debug", "info", "warning", "error"}:
        raise ValueError("expected one of debug, info, warning, error")
    return raw


def _audience(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be blank")
    return raw


_PARSERS: dict[str, Callable[[str], object]] = {
    "data_dir": Path,
    "keystore_file": Path,
    "host": str,
    "port": _port,
    "jwt_secret": Secret,
    "jwt_public_key_file": Path,
    "jwt_audience": _audience,
    "timezone": _zone,
    "controller": str,
    "jurisdiction": str,
    "delivery_webhook_url": _url,
    "delivery_webhook_secret": Secret,
    "fcm_service_account_file": Path,
    "fcm_base_url": _url,
    "apns_key_file": Path,
    "apns_key_id": str,
    "apns_team_id": str,
    "apns_bundle_id": str,
    "apns_base_url": _url,
    "webpush_vapid_key_file": Path,
    "webpush_vapid_subject": str,
    "max_body_bytes": _positive_int,
    "worker_enabled": _bool,
    "worker_concurrency": _positive_int,
    "worker_lease_seconds": _positive_int,
    "delivery_max_attempts": _positive_int,
    "delivery_backoff_seconds": _positive_float,
    "delivery_breaker_threshold": _positive_int,
    "delivery_breaker_cooldown_seconds": _positive_float,
    "log_level": _log_level,
}
