"""Web Push: RFC 8291 (aes128gcm) encrypted payloads, RFC 8292 VAPID, RFC 8030 headers.

pywebpush does the encryption (`WebPusher.encode`) and py_vapid the VAPID signature; the POST
is ours, through the adapters' shared client (`_http.Http1Client`), so timeouts, failures and
classification are the same as for every other provider.

The endpoint comes from the browser, i.e. from the user: without a check the gateway would POST
wherever a user asked (SSRF). Only https endpoints on known push services are used; a test can
allow plain http and 127.0.0.1. `Topic` (from the idempotency key) makes the push service
replace, not duplicate, a retried push still waiting for an offline browser; `Urgency` is
`high` only for `transactional`, so marketing never wakes a device on battery.

A subscription we cannot encrypt to (keys of the wrong shape, a point off the curve) can never
work: it is an `invalid_token` result, so the device is disabled, and never an exception, which
would take the other pushes of the worker's round down with it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from urllib.parse import urlsplit

import msgspec
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from py_vapid import Vapid02
from pywebpush import WebPusher

from clients.delivery._http import CONNECTIONS, Http1Client, ttl_seconds
from clients.delivery.base import PROVIDER_TIMEOUT_SECONDS, Clock, DeliveryMessage, DeliveryResult, SecretText

__all__ = [
    "PUSH_SERVICE_HOSTS",
    "WebPushAdapter",
    "WebPushConfig",
    "push_service_origin",
    "subscription_keys_valid",
    "vapid_subject_problem",
    "webpush_topic",
]

# The hosts subscriptions name, each exactly, but Windows' regional ones ("wns2-par02p.…"): an
# entry "*.domain" allows its subdomains. No other subdomain: one a user made up ("nx.fcm…",
# Apple's APNs host "api.push.apple.com") never answers a push, and its failures counted against
# the service's circuit, shared by every user's pushes to it (`WebPushAdapter.breaker_key`).
PUSH_SERVICE_HOSTS = (
    "fcm.googleapis.com",  # Chrome, Edge on Android
    "updates.push.services.mozilla.com",  # Firefox
    "*.notify.windows.com",  # Edge on Windows
    "web.push.apple.com",  # Safari
)
_VAPID_LIFETIME = 12 * 3600  # RFC 8292 allows at most 24 h
# The shape py_vapid accepts, in ASCII: a host or port in other characters ("ä.fcm…", ":٤٤٣") is
# refused by our HTTP client when sending, and no push service has one.
_VAPID_AUDIENCE = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]+)?")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


class WebPushConfig(msgspec.Struct, frozen=True, kw_only=True):
    vapid_private_key: SecretText
    """P-256 key: PEM, or the raw 32-byte key in base64url as `web-push generate-vapid-keys` prints."""
    vapid_subject: str
    """Contact for the push service operator: "mailto:..." or an https URL."""
    allowed_hosts: tuple[str, ...] = PUSH_SERVICE_HOSTS
    """Endpoint hosts allowed, each matching itself; one written "*.domain", the domain's subdomains."""
    allow_http: bool = False
    timeout: float = PROVIDER_TIMEOUT_SECONDS
    connections: int = CONNECTIONS


class _Keys(msgspec.Struct):
    p256dh: str
    auth: str


class _Subscription(msgspec.Struct):
    endpoint: str
    keys: _Keys


class _Payload(msgspec.Struct, kw_only=True):
    title: str
    body: str
    topic: str
    data: dict[str, str]
    cgw_idempotency_key: str


def webpush_topic(idempotency_key: str) -> str:
    """RFC 8030 Topic: at most 32 characters of the URL-safe base64 alphabet."""
    digest = hashlib.sha256(idempotency_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


def _never_sendable(code: str) -> DeliveryResult:
    """A subscription no push service could take, found out here: no call was made."""
    return DeliveryResult(status="invalid_token", provider_code=code, asked_provider=False)


def _base64url(text: str) -> bytes:
    """Browsers give the keys in base64url, padded or not; anything else decodes to nothing."""
    if not _BASE64URL.fullmatch(text):
        return b""
    bare = text.rstrip("=")
    try:
        return base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
    except binascii.Error:  # a length no base64 text has
        return b""


def subscription_keys_valid(p256dh: str, auth: str) -> bool:
    """RFC 8291's shapes: `p256dh` an uncompressed P-256 point (65 bytes, 0x04 first), `auth` a
    16-byte secret. The shape only: a point off the curve shows when encrypting to it."""
    point = _base64url(p256dh)
    return len(point) == 65 and point[0] == 4 and len(_base64url(auth)) == 16


_MAILTO = re.compile(r"mailto:[^@/?#<>]+@[^@/?#<>]+(\?.*)?", re.IGNORECASE)


def vapid_subject_problem(subject: str) -> str | None:
    """What keeps `subject` from being VAPID's contact (RFC 8292, section 2.1: a `mailto:` or an
    `https:` URI), or None. Checked here rather than by py_vapid, whose pattern refuses an https
    URL with a path (`https://example.com/contact`) and a mail domain with no dot, both valid."""
    problem = "must be a mailto: address (mailto:push-ops@example.com) or an https:// URL (RFC 8292)"
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in subject):
        return problem
    if _MAILTO.fullmatch(subject):
        return None
    if subject[:8].lower() != "https://":
        return problem
    try:
        parts = urlsplit(subject)
        _ = parts.port  # out of range or not a number: raises
    except ValueError:
        return problem
    return None if parts.hostname else problem


def _load_vapid(text: str) -> Vapid02:
    """PEM, or what py_vapid reads (a raw 32-byte key, or base64url DER of any key type). RFC 8292
    signs with ES256, P-256 only: a key of another curve or type would start, then fail every send."""
    if "-----BEGIN" in text:
        key: object = load_pem_private_key(text.encode(), password=None)
    else:
        key = Vapid02.from_string(text).private_key
    if not isinstance(key, EllipticCurvePrivateKey) or not isinstance(key.curve, SECP256R1):
        raise ValueError("the VAPID key must be an EC P-256 key")
    return Vapid02(private_key=key, conf={"no-strict": True})  # the subject: vapid_subject_problem


class WebPushAdapter:
    """Sends to the subscription's endpoint; 404/410 mean the subscription is gone."""

    name = "webpush"

    def __init__(
        self,
        config: WebPushConfig,
        clock: Clock = time.time,
    ) -> None:
        if problem := vapid_subject_problem(config.vapid_subject):
            raise ValueError(f"vapid_subject {problem}")
        self._vapid = _load_vapid(config.vapid_private_key.reveal())
        self._config = config
        self._clock = clock
        self._http = Http1Client(config.timeout, connections=config.connections)

    async def send(self, message: DeliveryMessage) -> DeliveryResult:
        try:
            subscription = msgspec.json.decode(message.token, type=_Subscription)
        except msgspec.DecodeError:
            return _never_sendable("MalformedSubscription")
        if not subscription_keys_valid(subscription.keys.p256dh, subscription.keys.auth):
            return _never_sendable("MalformedSubscription")
        origin = self.audience_for(subscription.endpoint)
        if origin is None:
            # Registration refuses such endpoints, and the list is not a setting: a device stored
            # before it can never be sent to, nor registered again. Disabled, its user gets
            # `no_device` rather than pushes that fail one by one.
            return _never_sendable("EndpointNotAllowed")
        payload = msgspec.json.encode(
            _Payload(
                title=message.title,
                body=message.body,
                topic=message.topic,
                data=message.data,
                cgw_idempotency_key=message.idempotency_key,
            )
        )
        try:
            pusher = WebPusher(msgspec.to_builtins(subscription))
            encrypted = pusher.encode(payload, content_encoding="aes128gcm")["body"]
        except Exception:  # pywebpush and http_ece raise many types (IndexError too) for bad keys
            return _never_sendable("MalformedSubscription")
        now = self._clock()
        claims = {"aud": origin, "sub": self._config.vapid_subject, "exp": int(now) + _VAPID_LIFETIME}
        headers = {
            **self._vapid.sign(claims),
            "ttl": str(ttl_seconds(message.expires_at.timestamp(), now)),
            "urgency": "high" if message.urgent else "normal",
            "topic": webpush_topic(message.idempotency_key),
            "content-encoding": "aes128gcm",
            "content-type": "application/octet-stream",
        }
        return await self._http.send(subscription.endpoint, headers, encrypted, self._clock)

    async def aclose(self) -> None:
        await self._http.aclose()

    def breaker_key(self, message: DeliveryMessage) -> str:
        """`webpush <allowed host>`: each push service has its own circuit, named by the entry of
        the allowed hosts its endpoint is on, not by the endpoint's own host: a service's
        subdomains (Windows' regional ones) are one provider, and circuits stay as few as the
        entries, whatever hosts subscriptions name. A token that names no allowed service is
        never sent (`send` answers `invalid_token`), so its key is moot."""
        try:
            endpoint = msgspec.json.decode(message.token, type=_Subscription).endpoint
        except msgspec.DecodeError:
            return f"{self.name} (none)"
        if self.audience_for(endpoint) is None:
            return f"{self.name} (none)"
        service = _service_of(urlsplit(endpoint).hostname or "", self._config.allowed_hosts)
        return f"{self.name} {service}"

    def audience_for(self, endpoint: str) -> str | None:
        """The endpoint's origin (the VAPID audience), or None when we must not POST there."""
        return push_service_origin(endpoint, self._config.allowed_hosts, self._config.allow_http)


def _service_of(host: str, allowed_hosts: tuple[str, ...]) -> str | None:
    """The entry of `allowed_hosts` a host is on: itself, or "*.domain" for a subdomain of domain
    (whose labels are none of them empty: ".notify.windows.com" is no host)."""
    host = host.lower()
    for entry in allowed_hosts:
        if host == entry:
            return entry
        domain = entry.removeprefix("*")
        if domain != entry and host.endswith(domain) and "" not in host[: -len(domain)].split("."):
            return entry
    return None


def push_service_origin(
    endpoint: str, allowed_hosts: tuple[str, ...] = PUSH_SERVICE_HOSTS, allow_http: bool = False
) -> str | None:
    """The endpoint's origin (the VAPID audience) when it is on one of `allowed_hosts`
    (`_service_of`), or None when we must not POST there. The adapter asks with its config;
    `POST /v1/me/devices` with the defaults, the only list the gateway's settings ever give it,
    so that a subscription no push could reach is refused, not kept."""
    try:
        parts = urlsplit(endpoint)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    schemes = ("https", "http") if allow_http else ("https",)
    host = parts.hostname or ""
    if parts.scheme not in schemes or parts.username or parts.password:
        return None
    try:
        port = parts.port
    except ValueError:  # out of range
        return None
    if not allow_http and port not in (None, 443):
        # Push services listen on 443: another port never connects, and its failures would
        # count against the service's circuit, shared by every user's pushes to it.
        return None
    if _service_of(host, allowed_hosts) is None:
        return None
    # The origin as RFC 6454 serializes it, which RFC 8292 makes the audience: the host in lower
    # case, the scheme's own port left out (`https://FCM.googleapis.com:443/…` gave that `aud`
    # as typed, which a push service comparing it exactly refuses).
    default = 443 if parts.scheme == "https" else 80
    origin = f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")
    return origin if _VAPID_AUDIENCE.fullmatch(origin) else None
