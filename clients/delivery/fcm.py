"""Firebase Cloud Messaging, HTTP v1 API, authenticated as a Google service account.

An OAuth2 access token is obtained with the JWT bearer grant (RFC 7523: an RS256 assertion
signed with the service account's key) and cached until five minutes before it expires (half
its lifetime before, for a token that lives ten minutes or less), so a busy worker asks Google
for one token an hour, not one per push. One token request runs at a time, and the sends
waiting for it share its answer, a failure too: a round's sends cost one token timeout while
Google's token endpoint is down, not one each. A 401 means the token died early (revoked, clock
skew): it is dropped and the send is tried once more with a fresh one. Refused again, or the
token endpoint refusing our assertion, is our credential's failure, not the device's: a retry
(`refused_alike`). The project's APNs or Web Push credential refused (THIRD_PARTY_AUTH_ERROR)
fails the push: Android's go on, so it would hold them back as a retry opening FCM's circuit.

FCM v1 has no client-supplied message id, so the idempotency key travels in `data` as
`cgw_idempotency_key` for the app to drop duplicates. The notification itself is shown once
however often it arrives: Android replaces a shown notification of the same `tag`, iOS one of
the same `apns-collapse-id` (both the push id, as the APNs adapter sends it); without them a
system-shown notification reached no app code that could drop it, and a push sent twice (a late
answer) was shown twice. No Android `collapse_key` is set: FCM keeps only four distinct collapse
keys per offline device, so per-push keys would lose pushes.
"""

from __future__ import annotations

import asyncio
import re
import time
from urllib.parse import urlsplit

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from clients.delivery._http import (
    CONNECTIONS,
    Http1Client,
    Reply,
    TransportFailure,
    classify_status,
    invalid_token,
    refused_alike,
    transport_failure,
    ttl_seconds,
)
from clients.delivery.base import (
    EXPIRED_UNSENT,
    PROVIDER_TIMEOUT_SECONDS,
    Clock,
    DeliveryMessage,
    DeliveryResult,
    SecretText,
    provider_code,
)  # fmt: skip

__all__ = ["FCM_SCOPE", "FcmAdapter", "FcmConfig"]

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_ASSERTION_LIFETIME = 3600  # Google's maximum
_REFRESH_MARGIN = 300.0
"""How long before its expiry a token is replaced, at most: at most half its lifetime too, or a
token endpoint answering `expires_in` of 300 s or less would be asked again by every send."""
_PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
"""Google's rule for project ids; one is a path segment of every send's URL."""


class FcmConfig(msgspec.Struct, frozen=True, kw_only=True):
    service_account: SecretText
    """The service-account key file's JSON text (client_email, private_key, token_uri, project_id)."""
    base_url: str = "https://fcm.googleapis.com"
    allow_http: bool = False
    """Lets the service account's token_uri be plain http (a test's local server)."""
    timeout: float = PROVIDER_TIMEOUT_SECONDS
    connections: int = CONNECTIONS


class _ServiceAccount(msgspec.Struct, kw_only=True):
    client_email: str
    private_key: str
    token_uri: str
    project_id: str
    private_key_id: str | None = None


def _check_account(account: _ServiceAccount, allow_http: bool) -> None:
    """Fields that could never work are refused at load, not found at every send: token_uri is
    where each access token is asked for (and the assertion's audience), project_id goes into
    the send URL's path, where `p/../x` would name another path."""
    schemes = ("https", "http") if allow_http else ("https",)
    try:
        parts = urlsplit(account.token_uri)
        netloc = parts.netloc  # as the delivery client takes it: printable ASCII, no spaces
        usable = (
            parts.scheme in schemes
            and bool(parts.hostname)
            and parts.port != 0
            and netloc.isascii()
            and netloc.isprintable()
            and " " not in netloc
        )
    except ValueError:  # a port out of range, an unbalanced IPv6 bracket
        usable = False
    if not usable:
        raise ValueError("the service account's token_uri must be an https:// URL with a host")
    if not _PROJECT_ID.fullmatch(account.project_id):
        raise ValueError(
            "the service account's project_id must be a Google Cloud project id: 6-30 lower-case"
            " letters, digits and hyphens, starting with a letter and not ending with a hyphen"
        )


class _TokenAnswer(msgspec.Struct):
    access_token: str
    expires_in: float = 3600.0


_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
"""The `@type` of the detail that carries FCM's own `errorCode` (UNREGISTERED, QUOTA_EXCEEDED...)."""
_THIRD_PARTY_AUTH = "THIRD_PARTY_AUTH_ERROR"  # the project's APNs or Web Push credential, not ours
# The service account without the right to send, for every device alike (Google's status with no
# FCM error code; a token of another project is SENDER_ID_MISMATCH, the device's).
_OUR_CREDENTIALS = frozenset({"PERMISSION_DENIED"})
_QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
_QUOTA_RETRY_SECONDS = 60.0


class _ErrorDetail(msgspec.Struct):
    type: str = msgspec.field(default="", name="@type")
    error_code: str | None = msgspec.field(default=None, name="errorCode")


class _Error(msgspec.Struct):
    status: str = ""
    message: str = ""
    details: list[_ErrorDetail] = msgspec.field(default_factory=list)


class _ErrorBody(msgspec.Struct):
    error: _Error


class FcmAdapter:
    """Sends to `{base_url}/v1/projects/{project_id}/messages:send`."""

    name = "fcm"

    def __init__(
        self,
        config: FcmConfig,
        clock: Clock = time.time,
    ) -> None:
        account = msgspec.json.decode(config.service_account.reveal(), type=_ServiceAccount)
        key = load_pem_private_key(account.private_key.encode(), password=None)
        if not isinstance(key, RSAPrivateKey):
            raise ValueError("the service account's private_key must be an RSA key")
        _check_account(account, config.allow_http)
        self._account = account
        self._key = key
        self._send_url = f"{config.base_url.rstrip('/')}/v1/projects/{account.project_id}/messages:send"
        self._clock = clock
        self._http = Http1Client(config.timeout, connections=config.connections)
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._token_lock = asyncio.Lock()
        self._token_requests = 0
        """Token requests answered so far: a send that finds it moved while it queued knows one ran."""
        self._token_failure: DeliveryResult | None = None
        """The last token request's failure, None once one succeeded."""

    async def send(self, message: DeliveryMessage) -> DeliveryResult:
        for _ in range(2):
            token = await self._access_token()
            if isinstance(token, DeliveryResult):
                return token
            # The wait for the token may have outlived the push: not sent then, as the worker
            # sends nothing past its expiry. Encoded now, so its TTL is what is left now.
            if self._clock() >= message.expires_at.timestamp():
                return DeliveryResult(status="retry", provider_code=EXPIRED_UNSENT, asked_provider=False)
            body = msgspec.json.encode(self._message_json(message))
            headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
            try:
                reply = await self._http.post(self._send_url, headers, content=body)
            except TransportFailure as exc:
                return transport_failure(exc.code)
            # A 401 is our access token's, save FCM's THIRD_PARTY_AUTH_ERROR: the project's APNs
            # or Web Push credential refused, which a new token would not mend (each iOS push
            # asked Google for one, and was sent twice).
            if reply.status != 401 or _error_code(_error_of(reply)) == _THIRD_PARTY_AUTH:
                break
            if self._token == token:
                self._token = None
        return self._classify(reply)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _message_json(self, message: DeliveryMessage) -> dict[str, object]:
        """Each platform's block carries the push's expiry: FCM keeps a message without one up to
        four weeks, on Android and for a web app's token alike (its `webpush` block, RFC 8030's
        headers, where `android.ttl` does not reach)."""
        expires = message.expires_at.timestamp()
        ttl = ttl_seconds(expires, self._clock())
        return {
            "message": {
                "token": message.token,
                "notification": {"title": message.title, "body": message.body},
                "data": {**message.data, "cgw_idempotency_key": message.idempotency_key},
                "android": {
                    "ttl": f"{ttl}s",
                    "priority": "HIGH" if message.urgent else "NORMAL",
                    "notification": {"tag": message.collapse_id},
                },
                "apns": {
                    "headers": {
                        "apns-expiration": str(int(expires)),
                        "apns-priority": "10" if message.urgent else "5",
                        "apns-collapse-id": message.collapse_id,
                    }
                },
                "webpush": {"headers": {"TTL": str(ttl), "Urgency": "high" if message.urgent else "normal"}},
            }
        }

    async def _access_token(self) -> str | DeliveryResult:
        """The cached token, or a new one; a failed token request is the send's result.

        One request at a time (single flight): the sends that queued behind a request that failed
        take its failure instead of each asking again. Else, while Google's token endpoint hangs, a
        round's sends would each wait out their own timeout, one after another, past the lease.
        A send that comes after the failure asks again.
        """
        queued_at = self._token_requests
        async with self._token_lock:
            now = self._clock()
            if self._token is not None and now < self._token_refresh_at:
                return self._token
            if self._token_requests != queued_at and self._token_failure is not None:
                return self._token_failure
            token = await self._request_token(now)
            self._token_requests += 1
            self._token_failure = token if isinstance(token, DeliveryResult) else None
            return token

    async def _request_token(self, now: float) -> str | DeliveryResult:
        form = {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": self._assertion(now),
        }
        try:
            reply = await self._http.post(self._account.token_uri, {}, form=form)
        except TransportFailure as exc:
            return transport_failure(exc.code)
        if not 200 <= reply.status < 300:  # 4xx: a bad key, a revoked account; 5xx, 429: Google's
            return refused_alike(reply, self._clock, "oauth_token")
        try:
            answer = msgspec.json.decode(reply.content, type=_TokenAnswer)
        except msgspec.DecodeError:
            return DeliveryResult(status="retry", provider_status=200, provider_code="oauth_token")
        self._token = answer.access_token
        self._token_refresh_at = now + answer.expires_in - min(_REFRESH_MARGIN, answer.expires_in / 2)
        return self._token

    def _assertion(self, now: float) -> str:
        iat = int(now)
        claims = {
            "iss": self._account.client_email,
            "scope": FCM_SCOPE,
            "aud": self._account.token_uri,
            "iat": iat,
            "exp": iat + _ASSERTION_LIFETIME,
        }
        headers = {"kid": self._account.private_key_id} if self._account.private_key_id else None
        return jwt.encode(claims, self._key, algorithm="RS256", headers=headers)

    def _classify(self, reply: Reply) -> DeliveryResult:
        """FCM's UNREGISTERED, or an INVALID_ARGUMENT about the registration token, disables the
        device.

        Only FCM's own error detail says UNREGISTERED: a 404 without it (a wrong base URL or
        project, a proxy, Google's generic `{"error": {"code": 404, ...}}`) is not trusted to
        mean the token is gone, and fails the push instead: disabling every device on a
        misconfiguration would be unrecoverable.
        """
        error = _error_of(reply)
        code = None if error is None else provider_code(_error_code(error))
        if error is not None:
            gone = any(d.type == _FCM_ERROR and d.error_code == "UNREGISTERED" for d in error.details)
            about_token = code == "INVALID_ARGUMENT" and "registration token" in error.message.lower()
            if gone or about_token:
                return invalid_token(reply, code)
        if (reply.status == 401 and code != _THIRD_PARTY_AUTH) or code in _OUR_CREDENTIALS:
            return refused_alike(reply, self._clock, code)  # a fresh access token refused too
        result = classify_status(reply, self._clock, code=code)
        if code == _QUOTA_EXCEEDED and result.retry_after is None:
            # FCM's ErrorCode reference: retry a sending limit exceeded with exponential backoff
            # from a minimum initial delay of one minute (the worker's own starts at a second).
            return msgspec.structs.replace(result, retry_after=_QUOTA_RETRY_SECONDS)
        return result


def _error_of(reply: Reply) -> _Error | None:
    """Google's error body of a refusal, if it is one."""
    if reply.status < 400:
        return None
    try:
        return msgspec.json.decode(reply.content, type=_ErrorBody).error
    except msgspec.DecodeError:
        return None


def _error_code(error: _Error | None) -> str | None:
    """FCM's own error code (its detail's `errorCode`), else Google's status."""
    if error is None:
        return None
    return next((d.error_code for d in error.details if d.error_code), None) or error.status or None
