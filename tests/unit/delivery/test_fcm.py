from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from clients.delivery import EXPIRED_UNSENT, DeliveryResult, FcmAdapter, FcmConfig
from clients.delivery.fcm import FCM_SCOPE

from .doubles import FakeClock, PlainSecret, make_message
from .servers import Answer, Http1Server, Received, Respond

PROJECT = "wallet-prod"
EMAIL = "cgw-push@wallet-prod.iam.gserviceaccount.com"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


def service_account(token_uri: str) -> PlainSecret:
    return PlainSecret(
        json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "kid-1",
                "private_key": PEM,
                "client_email": EMAIL,
                "token_uri": token_uri,
            }
        )
    )


def google_error(status: int, code: str, message: str = "", error_code: str | None = None) -> bytes:
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}]
    error = {"code": status, "message": message, "status": code, "details": details if error_code else []}
    return json.dumps({"error": error}).encode()


class Google:
    """OAuth token endpoint plus FCM v1, checking requests as Google does (with the test's clock)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.issued: list[str] = []
        self.valid: set[str] = set()
        self.refuse_all = False
        self.apns_credential_broken: set[str] = set()  # device tokens FCM answers THIRD_PARTY_AUTH_ERROR
        self.expires_in = 3599
        self.url = ""

    def __call__(self, got: Received) -> Answer:
        if got.path == "/token":
            return self.token(got)
        assert got.path == f"/v1/projects/{PROJECT}/messages:send"
        token = got.headers.get("authorization", "").removeprefix("Bearer ")
        if self.refuse_all or token not in self.valid:
            return (
                401,
                {},
                google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
            )
        message = json.loads(got.body)["message"]
        if message["token"] in self.apns_credential_broken:
            body = google_error(401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service",
                                error_code="THIRD_PARTY_AUTH_ERROR")  # fmt: skip
            return 401, {}, body
        return (
            200,
            {"content-type": "application/json"},
            json.dumps({"name": f"projects/{PROJECT}/messages/{len(message)}"}).encode(),
        )

    def token(self, got: Received) -> Answer:
        assert got.headers["content-type"] == "application/x-www-form-urlencoded"
        form = {k: v for k, [v] in parse_qs(got.body.decode(), strict_parsing=True).items()}
        assert form.keys() == {"grant_type", "assertion"}
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        try:
            claims = jwt.decode(
                form["assertion"],
                KEY.public_key(),
                algorithms=["RS256"],
                audience=f"{self.url}/token",
                issuer=EMAIL,
                options={
                    "require": ["iss", "aud", "iat", "exp", "scope"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError:
            return 400, {}, b'{"error": "invalid_grant"}'
        assert jwt.get_unverified_header(form["assertion"])["kid"] == "kid-1"
        assert claims["scope"] == FCM_SCOPE
        assert claims["iat"] <= self.clock.now < claims["exp"] <= claims["iat"] + 3600
        token = f"ya29.test-{len(self.issued)}"
        self.issued.append(token)
        self.valid.add(token)
        answer = {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        return 200, {"content-type": "application/json"}, json.dumps(answer).encode()


def run(
    google: Google, *steps: tuple[float, dict[str, object]]
) -> tuple[list[DeliveryResult], list[Received]]:
    """Send one message per step after advancing the clock; return results and what Google saw."""

    async def scenario(url: str) -> list[DeliveryResult]:
        adapter = FcmAdapter(
            FcmConfig(service_account=service_account(url + "/token"), base_url=url, allow_http=True),
            clock=google.clock,
        )
        results = []
        try:
            for advance, changes in steps:
                google.clock.advance(advance)
                results.append(await adapter.send(make_message(google.clock, **changes)))
        finally:
            await adapter.aclose()
        return results

    with Http1Server(google) as server:
        google.url = server.url
        return asyncio.run(scenario(server.url)), server.received


def test_sends_the_documented_v1_message_with_a_bearer_token_from_the_jwt_grant() -> None:
    google = Google(FakeClock())
    results, received = run(google, (0, {}), (0, {"topic": "transactional", "device_id": "dev_7"}))
    assert [r.status for r in results] == ["delivered", "delivered"]
    assert [r.path for r in received] == ["/token", f"/v1/projects/{PROJECT}/messages:send", received[1].path]
    sent = json.loads(received[1].body)
    expires = int(make_message(google.clock).expires_at.timestamp())
    assert sent == {
        "message": {
            "token": make_message(google.clock).token,
            "notification": {"title": "Weekend offer", "body": "10% off at partner stores"},
            "data": {"deeplink": "wallet://offers/7", "cgw_idempotency_key": "psh_01HZX:dev_42"},
            # A push sent twice (a late answer, then a retry) is shown once: a phone replaces a
            # shown notification of the same tag or collapse id (README, "at least once").
            "android": {"ttl": "3600s", "priority": "NORMAL", "notification": {"tag": "psh_01HZX"}},
            "apns": {
                "headers": {
                    "apns-expiration": str(expires),
                    "apns-priority": "5",
                    "apns-collapse-id": "psh_01HZX",
                }
            },
            # A web app's token: FCM kept a message without a TTL up to four weeks.
            "webpush": {"headers": {"TTL": "3600", "Urgency": "normal"}},
        }
    }
    urgent = json.loads(received[2].body)["message"]
    assert urgent["webpush"]["headers"]["Urgency"] == "high"
    assert urgent["android"]["priority"] == "HIGH"
    assert urgent["apns"]["headers"]["apns-priority"] == "10"
    assert urgent["data"]["cgw_idempotency_key"] == "psh_01HZX:dev_7"


class SlowToken(Google):
    """Google's token endpoint taking 90 s of the test's clock to answer."""

    def token(self, got: Received) -> Answer:
        self.clock.advance(90)
        return super().token(got)


def test_a_push_that_expired_while_the_token_was_fetched_is_not_sent() -> None:
    """The worker checks a push's expiry when its send starts; the wait for the access token
    came after, and the push was handed to FCM expired (TTL "0s") and counted delivered."""
    google = SlowToken(FakeClock())
    expiring: dict[str, object] = {"expires_at": datetime.fromtimestamp(google.clock.now + 60, UTC)}
    in_an_hour: dict[str, object] = {"expires_at": datetime.fromtimestamp(google.clock.now + 3600, UTC)}
    results, received = run(google, (0, expiring), (0, in_an_hour))
    assert results[0] == DeliveryResult(status="retry", provider_code=EXPIRED_UNSENT, asked_provider=False)
    assert results[1].status == "delivered"  # the token fetched is kept for the next send
    sent = [json.loads(r.body)["message"] for r in received if r.path != "/token"]
    assert [m["android"]["ttl"] for m in sent] == [f"{3600 - 90}s"]  # as left when it was sent
    assert [m["webpush"]["headers"]["TTL"] for m in sent] == [f"{3600 - 90}"]


def test_access_token_is_cached_until_five_minutes_before_expiry() -> None:
    google = Google(FakeClock())
    results, _ = run(google, (0, {}), (3599 - 300 - 1, {}), (1, {}), (60, {}))
    assert all(r.status == "delivered" for r in results)
    assert len(google.issued) == 2


@pytest.mark.parametrize("expires_in", [300, 120])
def test_a_token_living_five_minutes_or_less_is_reused_for_half_its_life(expires_in: int) -> None:
    """The five-minute margin alone made such a token stale on arrival: every send asked for a
    new one, one at a time behind the token lock."""
    google = Google(FakeClock())
    google.expires_in = expires_in
    half = expires_in / 2
    results, _ = run(google, (0, {}), (1, {}), (half - 2, {}), (1, {}), (1, {}))
    assert all(r.status == "delivered" for r in results)
    assert google.issued == ["ya29.test-0", "ya29.test-1"]  # the fourth send, at half its life, asks again


def test_a_401_drops_the_token_and_retries_once_with_a_fresh_one() -> None:
    google = Google(FakeClock())

    async def revoke_then_send(url: str) -> list[DeliveryResult]:
        adapter = FcmAdapter(
            FcmConfig(service_account=service_account(url + "/token"), base_url=url, allow_http=True),
            clock=google.clock,
        )
        try:
            first = await adapter.send(make_message(google.clock))
            google.valid.clear()
            return [first, await adapter.send(make_message(google.clock))]
        finally:
            await adapter.aclose()

    with Http1Server(google) as server:
        google.url = server.url
        results = asyncio.run(revoke_then_send(server.url))
    assert [r.status for r in results] == ["delivered", "delivered"]
    assert [r.path.rsplit("/", 1)[-1] for r in server.received] == [
        "token",
        "messages:send",
        "messages:send",
        "token",
        "messages:send",
    ]


def test_a_persistent_401_is_a_retry_after_one_refresh() -> None:
    """Refused with a fresh token too, it is our credential that fails, for every device alike:
    failed, each push in flight was dead-lettered while the operator mended the key."""
    google = Google(FakeClock())
    google.refuse_all = True
    results, received = run(google, (0, {}))
    assert results == [DeliveryResult(status="retry", provider_status=401, provider_code="UNAUTHENTICATED")]
    assert [r.path.rsplit("/", 1)[-1] for r in received] == [
        "token",
        "messages:send",
        "token",
        "messages:send",
    ]


def send_with(respond: Respond, timeout: float = 10.0) -> tuple[DeliveryResult, list[str]]:
    """The adapter's answer when a real local server plays Google with `respond`, and the paths
    the server was asked for."""

    async def scenario(url: str) -> DeliveryResult:
        config = FcmConfig(
            service_account=service_account(url + "/token"), base_url=url, allow_http=True, timeout=timeout
        )
        adapter = FcmAdapter(config, clock=FakeClock())
        try:
            return await adapter.send(make_message(FakeClock()))
        finally:
            await adapter.aclose()

    with Http1Server(respond) as server:
        result = asyncio.run(scenario(server.url))
    return result, [got.path for got in server.received]


TOKEN_OK: Answer = (
    200,
    {"content-type": "application/json"},
    b'{"access_token": "ya29.x", "expires_in": 3600}',
)
NOT_A_TOKEN = "The registration token is not a valid FCM registration token"


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (
            200,
            b'{"name": "projects/p/messages/1"}',
            {},
            DeliveryResult(status="delivered", provider_status=200),
        ),
        (
            404,
            google_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
            {},
            DeliveryResult(status="invalid_token", provider_status=404, provider_code="UNREGISTERED"),
        ),
        (
            400,
            google_error(400, "INVALID_ARGUMENT", NOT_A_TOKEN, "INVALID_ARGUMENT"),
            {},
            DeliveryResult(status="invalid_token", provider_status=400, provider_code="INVALID_ARGUMENT"),
        ),
        (
            404,
            google_error(404, "NOT_FOUND", "Requested entity was not found."),
            {},
            DeliveryResult(status="failed", provider_status=404, provider_code="NOT_FOUND"),
        ),
        (
            400,
            google_error(
                400, "INVALID_ARGUMENT", "Invalid value at 'message.data[0].value'", "INVALID_ARGUMENT"
            ),
            {},
            DeliveryResult(status="failed", provider_status=400, provider_code="INVALID_ARGUMENT"),
        ),
        (
            403,
            google_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"),
            {},
            DeliveryResult(status="failed", provider_status=403, provider_code="SENDER_ID_MISMATCH"),
        ),
        (  # the service account lacks the right to send: every device alike, so not failed for one
            403,
            google_error(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied"),
            {},
            DeliveryResult(status="retry", provider_status=403, provider_code="PERMISSION_DENIED"),
        ),
        (404, b"<html>not here</html>", {}, DeliveryResult(status="failed", provider_status=404)),
        (
            429,
            google_error(429, "RESOURCE_EXHAUSTED", "quota", "QUOTA_EXCEEDED"),
            {"retry-after": "30"},
            DeliveryResult(
                status="retry", retry_after=30.0, provider_status=429, provider_code="QUOTA_EXCEEDED"
            ),
        ),
        (  # no Retry-After: FCM asks for a minute at least before the first retry
            429,
            google_error(429, "RESOURCE_EXHAUSTED", "quota", "QUOTA_EXCEEDED"),
            {},
            DeliveryResult(
                status="retry", retry_after=60.0, provider_status=429, provider_code="QUOTA_EXCEEDED"
            ),
        ),
        (
            500,
            google_error(500, "INTERNAL", "", "INTERNAL"),
            {},
            DeliveryResult(status="retry", provider_status=500, provider_code="INTERNAL"),
        ),
        (
            503,
            google_error(503, "UNAVAILABLE", "", "UNAVAILABLE"),
            {},
            DeliveryResult(status="retry", provider_status=503, provider_code="UNAVAILABLE"),
        ),
        (502, b"bad gateway", {}, DeliveryResult(status="retry", provider_status=502)),
    ],
)
def test_send_status_classification(
    status: int, body: bytes, headers: dict[str, str], expected: DeliveryResult
) -> None:
    def respond(got: Received) -> Answer:
        if got.path == "/token":
            return TOKEN_OK
        return status, headers, body

    assert send_with(respond)[0] == expected


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"error": {}}', None),
        (b'{"error": {"code": 404, "message": "Not Found"}}', None),
        (b'{"error": {"message": "no route for /v1/projects/wallet-prod/messages:send"}}', None),
        (google_error(404, "NOT_FOUND", "Requested entity was not found."), "NOT_FOUND"),
        (b'{"error": {"status": "UNREGISTERED"}}', "UNREGISTERED"),  # not in FCM's detail
        (b'{"error": {"details": [{"errorCode": "UNREGISTERED"}]}}', "UNREGISTERED"),  # no @type
        (
            b'{"error": {"details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",'
            b' "errorCode": "UNREGISTERED"}]}}',
            "UNREGISTERED",
        ),
    ],
)
def test_a_404_without_fcms_unregistered_detail_fails_and_keeps_the_device(
    body: bytes, code: str | None
) -> None:
    """Any 404 with an `error` object disabled the device for good: a proxy's or a wrong base URL's
    JSON 404 would have disabled every device. Only FCM's own UNREGISTERED detail does now."""

    def respond(got: Received) -> Answer:
        return TOKEN_OK if got.path == "/token" else (404, {"content-type": "application/json"}, body)

    assert send_with(respond)[0] == DeliveryResult(status="failed", provider_status=404, provider_code=code)


@pytest.mark.parametrize(
    ("token_answer", "expected"),
    [
        (  # our key revoked, rotated or mistyped: not the device's fault, so not failed for it
            (400, {"content-type": "application/json"}, b'{"error": "invalid_grant"}'),
            DeliveryResult(status="retry", provider_status=400, provider_code="oauth_token"),
        ),
        (
            (503, {}, b""),
            DeliveryResult(status="retry", provider_status=503, provider_code="oauth_token"),
        ),
        (
            (200, {}, b"{}"),
            DeliveryResult(status="retry", provider_status=200, provider_code="oauth_token"),
        ),
    ],
)
def test_token_endpoint_failures_end_the_send(token_answer: Answer, expected: DeliveryResult) -> None:
    assert send_with(lambda got: token_answer) == (expected, ["/token"])


def test_network_failure_is_a_retry() -> None:
    def respond(got: Received) -> Answer:
        if got.path == "/token":
            return TOKEN_OK
        time.sleep(1.0)  # longer than the adapter's timeout
        return 200, {}, b"{}"

    assert send_with(respond, timeout=0.3)[0] == DeliveryResult(status="retry", provider_code="Timeout")


def test_rejects_a_non_rsa_service_account_key() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    account = json.loads(service_account("http://127.0.0.1:9/token").reveal())
    account["private_key"] = ec_pem.decode()
    with pytest.raises(ValueError, match="RSA"):
        FcmAdapter(FcmConfig(service_account=PlainSecret(json.dumps(account))))


def account_with(**changes: str) -> PlainSecret:
    account = json.loads(service_account("https://oauth2.googleapis.com/token").reveal())
    return PlainSecret(json.dumps(account | changes))


@pytest.mark.parametrize(
    "token_uri",
    [
        "http://oauth2.googleapis.com/token",  # the assertion and the access token in clear
        "oauth2.googleapis.com/token",
        "https:///token",
        "https://",
        "https://oauth2.googleapis.com:99999/token",
        "https://oauth2.googleapis.com:0/token",
        "https://[::1/token",
        "https://oauth2.googleapis.cöm/token",
        "ftp://oauth2.googleapis.com/token",
        "",
    ],
)
def test_a_token_uri_that_could_never_work_is_refused_at_load(token_uri: str) -> None:
    with pytest.raises(ValueError, match="token_uri"):
        FcmAdapter(FcmConfig(service_account=account_with(token_uri=token_uri)))


@pytest.mark.parametrize(
    "project_id",
    [
        "p/../x",
        "wallet-prod/../other",
        "wallet prod",
        "Wallet-Prod",
        "wallet-prod-",
        "1wallet",
        "abc",
        "",
        "a" * 31,
    ],
)
def test_a_project_id_that_is_no_google_project_id_is_refused_at_load(project_id: str) -> None:
    with pytest.raises(ValueError, match="project_id"):
        FcmAdapter(FcmConfig(service_account=account_with(project_id=project_id)))


@pytest.mark.parametrize("project_id", ["wallet-prod", "abcdef", "a" * 30, "my-project-12345"])
def test_google_project_ids_and_its_token_uri_are_accepted(project_id: str) -> None:
    adapter = FcmAdapter(FcmConfig(service_account=account_with(project_id=project_id)))
    asyncio.run(adapter.aclose())


def test_sends_waiting_for_a_failed_token_request_share_its_failure_instead_of_asking_again() -> None:
    """Each send used to ask again behind the failed request before it: while Google's token
    endpoint timed out, a round of 256 sends cost 256 timeouts one after another, past the lease.
    Now the round asks once, each of its sends is a retry, and a later send asks again."""
    google = Google(FakeClock())
    down = True

    def respond(got: Received) -> Answer:
        if got.path == "/token" and down:
            return 503, {}, b""
        return google(got)

    async def scenario(url: str) -> tuple[list[DeliveryResult], DeliveryResult]:
        nonlocal down
        adapter = FcmAdapter(
            FcmConfig(service_account=service_account(url + "/token"), base_url=url, allow_http=True),
            clock=google.clock,
        )
        try:
            round_ = await asyncio.gather(
                *(adapter.send(make_message(google.clock, device_id=f"dev_{i}")) for i in range(12))
            )
            down = False
            return list(round_), await adapter.send(make_message(google.clock))
        finally:
            await adapter.aclose()

    with Http1Server(respond) as server:
        google.url = server.url
        round_, later = asyncio.run(scenario(server.url))
    failure = DeliveryResult(status="retry", provider_status=503, provider_code="oauth_token")
    assert round_ == [failure] * 12
    assert [got.path.rsplit("/", 1)[-1] for got in server.received] == ["token", "token", "messages:send"]
    assert later.status == "delivered"


@pytest.mark.parametrize(
    "echoed",
    [
        "BAD_TOKEN:devtok-LEAK-fcm-e5f6",
        "fGcm_tok3n:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx",
        "13800138000",
        "ab" * 32,
        "UNREGISTERED " * 5,
    ],
)
def test_an_error_code_that_is_no_name_is_kept_as_unrecognized(echoed: str) -> None:
    """What the worker keeps of a provider's answer outlives the user's erasure: a code echoing
    the device token (or anything that is not a code's name) must not be it."""

    def respond(got: Received) -> Answer:
        if got.path == "/token":
            return TOKEN_OK
        return 400, {"content-type": "application/json"}, google_error(400, "INVALID_ARGUMENT", "x", echoed)

    assert send_with(respond)[0] == DeliveryResult(
        status="failed", provider_status=400, provider_code="unrecognized"
    )


def test_an_ios_device_refused_for_the_project_s_apns_credential_keeps_the_access_token() -> None:
    """FCM answers 401 THIRD_PARTY_AUTH_ERROR when the Firebase project's APNs (or Web Push)
    credential is bad: our access token is fine. Each such push dropped it, asked Google for a
    new one and was sent twice: with a broken APNs credential, two token requests per iOS push."""
    google = Google(FakeClock())
    google.apns_credential_broken.add("ios-device-token")
    steps: list[tuple[float, dict[str, object]]] = [
        (0.0, {"token": "ios-device-token"}), (0.0, {"token": "android-device-token"}),
    ] * 3  # fmt: skip
    results, received = run(google, *steps)
    assert [(r.status, r.provider_code) for r in results] == [
        ("failed", "THIRD_PARTY_AUTH_ERROR"), ("delivered", None),
    ] * 3  # fmt: skip
    assert len(google.issued) == 1
    assert [r.path for r in received].count(f"/v1/projects/{PROJECT}/messages:send") == 6
