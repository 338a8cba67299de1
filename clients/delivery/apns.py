"""Apple Push Notification service over HTTP/2, with token-based (ES256 JWT) authentication.

APNs speaks only HTTP/2, so the default transport disables HTTP/1.1: the connection is HTTP/2
on https, and on an http:// base URL (local tests) it is h2c with prior knowledge. Apple
rejects a provider token refreshed more than once per 20 minutes or older than an hour, so
one JWT is reused for 50 minutes, and one Apple refuses is replaced only if it is 20 minutes old.

Priority: 10 (immediate) only for `transactional`; every marketing topic goes at 5, which
lets iOS batch it for battery and never wakes a device for an offer. `apns-id` is a UUIDv5 of
the idempotency key and `apns-collapse-id` the push id, so a retried push is shown once.

Its connection is kept open between pushes, as Apple asks (it takes connections opened and closed
again and again for a denial-of-service attack), for up to `KEEPALIVE_SECONDS` idle: httpx's
default of 5 s opened a new TLS connection for each push of a quiet hour.

Its client holds to what `Http1Client` promises the other providers: no redirect followed
(httpx's default), no proxy from the environment (a transport of its own ignores it), no cookie
kept, and no more than `MAX_ANSWER_BYTES` of an answer read, where httpx would keep whatever a
server set and read an answer of any length into memory.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from clients.delivery._http import (
    MAX_ANSWER_BYTES,
    Reply,
    TransportFailure,
    classify_status,
    invalid_token,
    refused_alike,
    transport_failure,
)  # fmt: skip
from clients.delivery.base import (
    PROVIDER_TIMEOUT_SECONDS,
    Clock,
    DeliveryMessage,
    DeliveryResult,
    SecretText,
    provider_code,
)  # fmt: skip

__all__ = ["APNS_ID_NAMESPACE", "ApnsAdapter", "ApnsConfig", "apns_id", "device_token_valid"]

APNS_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:consent-gateway:apns-id")
_JWT_REUSE = 50 * 60
_JWT_REFRESH_FLOOR = 20 * 60
KEEPALIVE_SECONDS = 300.0
"""How long an idle connection is kept: under the 350 s after which AWS's NAT gateways drop an
idle TCP connection without a word (Google Cloud NAT's is 1,200 s), so a kept connection is
rarely a dead one that costs a send its timeout."""
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_SECONDS)
"""httpx's own limits but for the keep-alive (a transport of our own takes none of the client's)."""
_DEVICE_TOKEN = re.compile(r"[0-9A-Fa-f]{16,200}")
_INVALID_REASONS = frozenset({"Unregistered", "BadDeviceToken"})
_STALE_JWT_REASONS = frozenset({"ExpiredProviderToken", "InvalidProviderToken"})
_DEVICE_THROTTLED = "TooManyRequests"  # "too many requests ... to the same device token"


class ApnsConfig(msgspec.Struct, frozen=True, kw_only=True):
    team_id: str
    key_id: str
    private_key: SecretText
    """The .p8 signing key (PKCS#8 PEM, P-256) downloaded from the Apple developer account."""
    bundle_id: str
    base_url: str = "https://api.push.apple.com"
    timeout: float = PROVIDER_TIMEOUT_SECONDS


class _ErrorBody(msgspec.Struct):
    reason: str | None = None


def device_token_valid(token: str) -> bool:
    """The device token APNs gave the app, in hex (16 to 200 hex digits): it goes into the URL
    path, so anything else is never sent. Registration refuses the rest with this same rule."""
    return _DEVICE_TOKEN.fullmatch(token) is not None


def apns_id(idempotency_key: str) -> str:
    """The same push to the same device always carries the same apns-id."""
    return str(uuid.uuid5(APNS_ID_NAMESPACE, idempotency_key))


class ApnsAdapter:
    """Sends to `{base_url}/3/device/{token}`."""

    name = "apns"

    def __init__(
        self,
        config: ApnsConfig,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.time,
    ) -> None:
        key = load_pem_private_key(config.private_key.reveal().encode(), password=None)
        if not isinstance(key, EllipticCurvePrivateKey) or not isinstance(key.curve, SECP256R1):
            # ES256 signs with P-256 only: another curve would start, then fail every send.
            raise ValueError("the APNs signing key must be an EC P-256 key")
        self._key = key
        self._config = config
        self._base = config.base_url.rstrip("/")
        self._clock = clock
        self._client = httpx.AsyncClient(
            transport=transport or httpx.AsyncHTTPTransport(http1=False, http2=True, limits=_LIMITS),
            timeout=config.timeout,
            headers={"accept-encoding": "identity"},  # as Http1Client: no coding to get wrong
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),  # a jar no domain may fill
        )
        self._jwt: str | None = None
        self._jwt_iat = 0.0

    async def send(self, message: DeliveryMessage) -> DeliveryResult:
        if not device_token_valid(message.token):
            # It goes into the URL path: anything but hex is not an APNs token. Registration
            # refuses one now, but a row kept from before may still hold one.
            return DeliveryResult(
                status="invalid_token", provider_code="MalformedToken", asked_provider=False
            )
        url = f"{self._base}/3/device/{message.token}"
        body = msgspec.json.encode(
            {
                **message.data,
                "cgw_idempotency_key": message.idempotency_key,
                "aps": {"alert": {"title": message.title, "body": message.body}},
            }
        )
        for _ in range(2):
            token = self._provider_token()
            try:
                reply = await self._post(url, body, self._headers(message, token))
            except TransportFailure as exc:
                return transport_failure(exc.code)
            reason = _reason(reply)
            if reply.status != 403 or reason not in _STALE_JWT_REASONS or not self._replaced(token):
                break
        if reply.status == 410 or reason in _INVALID_REASONS:
            return invalid_token(reply, reason)
        if reply.status == 403 and reason in _STALE_JWT_REASONS:  # refused fresh too: our key's
            return refused_alike(reply, self._clock, reason)
        result = classify_status(reply, self._clock, code=reason)
        if reply.status == 429 and reason == _DEVICE_THROTTLED:
            return msgspec.structs.replace(result, device_throttled=True)
        return result

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        """One POST and its whole answer within `timeout`, as every adapter's provider call is.
        httpx's own timeout bounds each read, and each HTTP/2 frame (a PING, one byte of DATA)
        starts it again: a server trickling frames would hold the send, and the worker's round
        with it, for ever."""
        try:
            async with (
                asyncio.timeout(self._config.timeout),
                self._client.stream("POST", url, content=body, headers=headers) as response,
            ):
                return Reply(response.status_code, response.headers, await _whole(response))
        except TimeoutError:
            raise TransportFailure("Timeout") from None
        except httpx.HTTPError as exc:  # no answer, or one httpx cannot read (a garbled gzip body)
            raise TransportFailure(type(exc).__name__) from None

    def _headers(self, message: DeliveryMessage, token: str) -> dict[str, str]:
        return {
            "authorization": f"bearer {token}",
            "apns-topic": self._config.bundle_id,
            "apns-push-type": "alert",
            "apns-priority": "10" if message.urgent else "5",
            "apns-expiration": str(int(message.expires_at.timestamp())),
            "apns-collapse-id": message.collapse_id,
            "apns-id": apns_id(message.idempotency_key),
            "content-type": "application/json",
        }

    def _replaced(self, refused: str) -> bool:
        """Whether a token Apple refused is replaced, for the send to be made once more. Only the
        token that failed: the sends in flight with it would each mint their own. And not one made
        less than `_JWT_REFRESH_FLOOR` ago, which Apple answers `TooManyProviderTokenUpdates`:
        refused that fresh, the fault is our key or clock, which a new token does not mend, and
        a clock off by an hour made two tokens a send. One made "in the future" (the clock has
        been stepped back since) is replaced: its age says nothing, and kept it was refused for
        an hour after the clock was put right."""
        if self._jwt != refused:
            return True  # another send replaced it already
        if 0 <= self._clock() - self._jwt_iat < _JWT_REFRESH_FLOOR:
            return False
        self._jwt = None
        return True

    def _provider_token(self) -> str:
        now = self._clock()
        if self._jwt is None or not 0 <= now - self._jwt_iat < _JWT_REUSE:
            self._jwt_iat = now
            claims = {"iss": self._config.team_id, "iat": int(now)}
            self._jwt = jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self._config.key_id})
        return self._jwt


async def _whole(response: httpx.Response) -> bytes:
    """The answer's body, refused once past `MAX_ANSWER_BYTES`: APNs answers a few dozen bytes."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise TransportFailure("AnswerTooLarge")
    return bytes(body)


def _reason(reply: Reply) -> str | None:
    if reply.status == 200:
        return None
    try:
        return provider_code(msgspec.json.decode(reply.content, type=_ErrorBody).reason)
    except msgspec.DecodeError:
        return None
