from __future__ import annotations

import asyncio
import json
import time
import uuid

import h2.config
import h2.connection
import h2.events
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from clients.delivery import ApnsAdapter, ApnsConfig, DeliveryResult
from clients.delivery._http import MAX_ANSWER_BYTES
from clients.delivery.apns import apns_id

from .doubles import FakeClock, PlainSecret, make_message
from .servers import Answer, H2cServer, Received

TEAM = "TEAM123456"
KEY_ID = "KEY7654321"
BUNDLE = "com.example.wallet"
KEY = ec.generate_private_key(ec.SECP256R1())
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
TOKEN = "a1" * 32
GONE = "b2" * 32
APNS: dict[str, object] = {"platform": "apns", "token": TOKEN}


def reason(status: int, why: str) -> Answer:
    return status, {"content-type": "application/json"}, json.dumps({"reason": why}).encode()


class Apple:
    """APNs as documented: provider JWT, headers, token state; its clock is the test's."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.not_before = 0.0  # JWTs issued before this are "expired" in Apple's eyes

    def __call__(self, got: Received) -> Answer:
        assert got.method == "POST"
        assert got.headers[":scheme"] == "http"
        scheme, _, provider_token = got.headers["authorization"].partition(" ")
        assert scheme == "bearer"
        assert jwt.get_unverified_header(provider_token) == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
        try:
            claims = jwt.decode(
                provider_token,
                KEY.public_key(),
                algorithms=["ES256"],
                options={"require": ["iss", "iat"], "verify_iat": False},
            )
        except jwt.InvalidTokenError:
            return reason(403, "InvalidProviderToken")
        assert claims["iss"] == TEAM
        if not self.not_before <= claims["iat"] <= self.clock.now < claims["iat"] + 3600:
            return reason(403, "ExpiredProviderToken")
        if got.headers["apns-topic"] != BUNDLE:
            return reason(400, "DeviceTokenNotForTopic")
        assert got.headers["apns-push-type"] == "alert"
        assert got.headers["apns-priority"] in {"5", "10"}
        assert int(got.headers["apns-expiration"]) > self.clock.now
        assert 0 < len(got.headers["apns-collapse-id"].encode()) <= 64
        uuid.UUID(got.headers["apns-id"])
        assert json.loads(got.body)["aps"]["alert"].keys() == {"title", "body"}
        if got.path == f"/3/device/{GONE}":
            return 410, {}, json.dumps({"reason": "Unregistered", "timestamp": 1700000000000}).encode()
        assert got.path == f"/3/device/{TOKEN}"
        return 200, {"apns-id": got.headers["apns-id"]}, b""


def config(url: str) -> ApnsConfig:
    return ApnsConfig(
        team_id=TEAM, key_id=KEY_ID, private_key=PlainSecret(PEM), bundle_id=BUNDLE, base_url=url
    )


def run(apple: Apple, *steps: tuple[float, dict[str, object]]) -> tuple[list[DeliveryResult], list[Received]]:
    """Each step advances the clock then sends; the adapter uses its default (HTTP/2-only) transport."""

    async def scenario() -> tuple[list[DeliveryResult], list[Received]]:
        async with H2cServer(apple) as server:
            adapter = ApnsAdapter(config(server.url), clock=apple.clock)
            results = []
            try:
                for advance, changes in steps:
                    apple.clock.advance(advance)
                    message = make_message(apple.clock, **{"platform": "apns", "token": TOKEN, **changes})
                    results.append(await adapter.send(message))
            finally:
                await adapter.aclose()
        return results, server.received

    return asyncio.run(scenario())


def test_sends_over_http2_with_a_verifiable_provider_token_and_apple_headers() -> None:
    apple = Apple(FakeClock())
    message = make_message(apple.clock)
    results, received = run(apple, (0, {}), (0, {"topic": "transactional"}), (5, {}))
    assert [r.status for r in results] == ["delivered"] * 3
    first, urgent, again = received
    assert first.headers["apns-priority"] == "5"
    assert urgent.headers["apns-priority"] == "10"
    assert first.headers["apns-expiration"] == str(int(message.expires_at.timestamp()))
    assert first.headers["apns-collapse-id"] == "psh_01HZX"
    assert first.headers["apns-id"] == str(
        uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "urn:consent-gateway:apns-id"), "psh_01HZX:dev_42")
    )
    assert again.headers["apns-id"] == first.headers["apns-id"]
    assert json.loads(first.body) == {
        "aps": {"alert": {"title": "Weekend offer", "body": "10% off at partner stores"}},
        "deeplink": "wallet://offers/7",
        "cgw_idempotency_key": "psh_01HZX:dev_42",
    }


def test_the_connection_is_kept_between_pushes_seconds_apart() -> None:
    """Apple takes connections opened again and again for an attack; httpx's default closed one
    idle for 5 s, so each push of a quiet hour came on a new one."""

    async def scenario() -> tuple[list[str], int]:
        apple = Apple(FakeClock())
        async with H2cServer(apple) as server:
            adapter = ApnsAdapter(config(server.url), clock=apple.clock)
            try:
                first = await adapter.send(make_message(apple.clock, **APNS))
                await asyncio.sleep(5.5)
                second = await adapter.send(make_message(apple.clock, **APNS))
            finally:
                await adapter.aclose()
        return [first.status, second.status], server.connections

    assert asyncio.run(scenario()) == (["delivered", "delivered"], 1)


def test_provider_token_is_reused_for_50_minutes_then_replaced() -> None:
    apple = Apple(FakeClock())
    _, received = run(apple, (0, {}), (49 * 60, {}), (60, {}), (60, {}))
    tokens = [r.headers["authorization"] for r in received]
    assert tokens[0] == tokens[1] != tokens[2] == tokens[3]


def test_expired_provider_token_is_replaced_once_and_the_push_resent() -> None:
    apple = Apple(FakeClock())

    async def scenario() -> tuple[list[DeliveryResult], list[Received]]:
        async with H2cServer(apple) as server:
            adapter = ApnsAdapter(config(server.url), clock=apple.clock)
            try:
                first = await adapter.send(make_message(apple.clock, platform="apns", token=TOKEN))
                apple.clock.advance(21 * 60)
                apple.not_before = apple.clock.now  # Apple no longer honours the cached JWT
                second = await adapter.send(make_message(apple.clock, platform="apns", token=TOKEN))
            finally:
                await adapter.aclose()
        return [first, second], server.received

    results, received = asyncio.run(scenario())
    assert [r.status for r in results] == ["delivered", "delivered"]
    assert len(received) == 3
    assert received[0].headers["authorization"] == received[1].headers["authorization"]
    assert received[2].headers["authorization"] != received[1].headers["authorization"]


def test_sends_in_flight_with_an_expired_provider_token_replace_it_once() -> None:
    """Each 403 used to drop whatever token was cached, so 20 sends in flight with the expired one
    minted 20 new ones, and Apple refuses updates more often than every 20 minutes."""
    apple = Apple(FakeClock())

    async def scenario() -> tuple[list[DeliveryResult], list[Received]]:
        async with H2cServer(apple) as server:
            adapter = ApnsAdapter(config(server.url), clock=apple.clock)
            try:
                await adapter.send(make_message(apple.clock, platform="apns", token=TOKEN))
                apple.clock.advance(21 * 60)
                apple.not_before = apple.clock.now  # Apple no longer honours the cached JWT
                results = await asyncio.gather(
                    *(
                        adapter.send(
                            make_message(apple.clock, platform="apns", token=TOKEN, device_id=f"d{i}")
                        )
                        for i in range(20)
                    )
                )
            finally:
                await adapter.aclose()
        return list(results), server.received

    results, received = asyncio.run(scenario())
    assert [r.status for r in results] == ["delivered"] * 20
    tokens = [got.headers["authorization"] for got in received]
    assert len(received) == 1 + 20 + 20  # the first send, then each once refused and once resent
    assert len(set(tokens)) == 2  # the expired one and a single replacement


def test_a_token_refused_within_20_minutes_of_its_making_is_not_replaced() -> None:
    """Refused that fresh, the key or the clock is at fault, and Apple answers a token replaced
    more often than every 20 minutes with TooManyProviderTokenUpdates: a clock an hour off used
    to mint two tokens a send. One replacement per 20 minutes, and each send fails as the
    gateway's own fault, tried again and counted toward the circuit."""
    apple = Apple(FakeClock())
    apple.not_before = apple.clock.now + 10**6  # every token the adapter can make is refused
    results, received = run(apple, *[(5, {})] * 10, (20 * 60, {}), (5, {}))
    assert {(r.status, r.provider_code) for r in results} == {("retry", "ExpiredProviderToken")}
    tokens = [got.headers["authorization"] for got in received]
    assert len(received) == 10 + 2 + 1  # the send 20 minutes on replaces its token once
    assert len(set(tokens[:10])) == 1
    assert len(set(tokens)) == 2


def test_a_token_made_while_the_clock_was_ahead_is_replaced_once_it_is_put_right() -> None:
    """Its age came out negative, under the 20 minutes and the 50, so the token Apple refused was
    kept, and every send refused, for an hour after the clock was stepped back."""
    apple = Apple(FakeClock())
    ours = FakeClock()
    ours.advance(3600)  # an hour ahead of Apple's

    async def scenario() -> list[DeliveryResult]:
        async with H2cServer(apple) as server:
            adapter = ApnsAdapter(config(server.url), clock=ours)
            try:
                ahead = await adapter.send(make_message(ours, **APNS))
                ours.now = apple.clock.now  # put right
                return [ahead, await adapter.send(make_message(ours, **APNS))]
            finally:
                await adapter.aclose()

    ahead, righted = asyncio.run(scenario())
    assert (ahead.status, ahead.provider_code) == ("retry", "ExpiredProviderToken")
    assert righted.status == "delivered"


def test_unregistered_device_is_an_invalid_token() -> None:
    apple = Apple(FakeClock())
    results, _ = run(apple, (0, {"token": GONE}))
    assert results == [
        DeliveryResult(status="invalid_token", provider_status=410, provider_code="Unregistered")
    ]


@pytest.mark.parametrize("token", ["../../3/device/x", "abc", "zz" * 32, TOKEN + "/extra"])
def test_a_token_that_is_not_hex_never_reaches_the_url(token: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    assert send_with(httpx.MockTransport(handler), token=token) == DeliveryResult(
        status="invalid_token", provider_code="MalformedToken", asked_provider=False
    )


def send_with(transport: httpx.MockTransport, token: str = TOKEN) -> DeliveryResult:
    async def scenario() -> DeliveryResult:
        adapter = ApnsAdapter(config("http://127.0.0.1:9"), transport=transport, clock=FakeClock())
        try:
            return await adapter.send(make_message(FakeClock(), platform="apns", token=token))
        finally:
            await adapter.aclose()

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    ("status", "why", "headers", "expected"),
    [
        (200, None, {}, DeliveryResult(status="delivered", provider_status=200)),
        (
            400,
            "BadDeviceToken",
            {},
            DeliveryResult(status="invalid_token", provider_status=400, provider_code="BadDeviceToken"),
        ),
        (
            410,
            "Unregistered",
            {},
            DeliveryResult(status="invalid_token", provider_status=410, provider_code="Unregistered"),
        ),
        (
            410,
            "ExpiredToken",
            {},
            DeliveryResult(status="invalid_token", provider_status=410, provider_code="ExpiredToken"),
        ),
        (
            400,
            "BadCollapseId",
            {},
            DeliveryResult(status="failed", provider_status=400, provider_code="BadCollapseId"),
        ),
        (
            400,
            "DeviceTokenNotForTopic",
            {},
            DeliveryResult(status="failed", provider_status=400, provider_code="DeviceTokenNotForTopic"),
        ),
        (
            403,
            "InvalidProviderToken",
            {},
            # Refused fresh too: our signing key, key id or team, not the device.
            DeliveryResult(status="retry", provider_status=403, provider_code="InvalidProviderToken"),
        ),
        (
            413,
            "PayloadTooLarge",
            {},
            DeliveryResult(status="failed", provider_status=413, provider_code="PayloadTooLarge"),
        ),
        (
            429,
            "TooManyRequests",
            {"retry-after": "12"},
            # One device's pushes throttled: the provider is working (`device_throttled`).
            DeliveryResult(
                status="retry",
                retry_after=12.0,
                provider_status=429,
                provider_code="TooManyRequests",
                device_throttled=True,
            ),
        ),
        (
            429,
            "TooManyProviderTokenUpdates",
            {},
            DeliveryResult(status="retry", provider_status=429, provider_code="TooManyProviderTokenUpdates"),
        ),
        (
            500,
            "InternalServerError",
            {},
            DeliveryResult(status="retry", provider_status=500, provider_code="InternalServerError"),
        ),
        (
            503,
            "ServiceUnavailable",
            {},
            DeliveryResult(status="retry", provider_status=503, provider_code="ServiceUnavailable"),
        ),
        (502, None, {}, DeliveryResult(status="retry", provider_status=502)),
    ],
)
def test_status_classification(
    status: int, why: str | None, headers: dict[str, str], expected: DeliveryResult
) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["authorization"])
        content = json.dumps({"reason": why}).encode() if why else b""
        return httpx.Response(status, content=content, headers=headers)

    assert send_with(httpx.MockTransport(handler)) == expected
    assert len(calls) == 1  # a token refused minutes after its making is not replaced


def test_connection_refused_is_a_retry() -> None:
    async def scenario() -> DeliveryResult:
        async with H2cServer(Apple(FakeClock())) as server:
            url = server.url
        adapter = ApnsAdapter(config(url), clock=FakeClock())
        try:
            return await adapter.send(make_message(FakeClock(), platform="apns", token=TOKEN))
        finally:
            await adapter.aclose()

    assert asyncio.run(scenario()) == DeliveryResult(status="retry", provider_code="ConnectError")


def test_apns_id_is_a_stable_uuid5() -> None:
    assert apns_id("p:d") == apns_id("p:d") != apns_id("p:e")
    assert uuid.UUID(apns_id("p:d")).version == 5


def pkcs8(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP521R1(), ec.SECP256K1()], ids=lambda c: c.name)
def test_a_signing_key_on_another_curve_is_refused_at_load(curve: ec.EllipticCurve) -> None:
    """ES256 signs with P-256 only: such a key would start, then fail every send."""
    other = ApnsConfig(
        team_id=TEAM,
        key_id=KEY_ID,
        private_key=PlainSecret(pkcs8(ec.generate_private_key(curve))),
        bundle_id=BUNDLE,
    )
    with pytest.raises(ValueError, match="P-256"):
        ApnsAdapter(other)


class Trickler:
    """APNs gone slow on h2c: its first request gets frames every `every` seconds and never an end
    (`how`: "ping" sends the answer's headers then PINGs, "data" the headers then a byte of body
    at a time, "ping-only" PINGs alone); later requests get a 200 at once."""

    def __init__(self, how: str, every: float) -> None:
        self.how = how
        self.every = every
        self.answered = 0
        self.url = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Trickler:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        try:
            while data := await reader.read(65535):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        self._answer(conn, writer, event.stream_id)
                writer.write(conn.data_to_send())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _answer(self, conn: h2.connection.H2Connection, writer: asyncio.StreamWriter, stream: int) -> None:
        self.answered += 1
        if self.answered > 1:
            conn.send_headers(stream, [(":status", "200"), ("content-length", "0")], end_stream=True)
            return
        if self.how != "ping-only":
            conn.send_headers(stream, [(":status", "200")])
        task = asyncio.ensure_future(self._trickle(conn, writer, stream))
        self._tasks.add(task)

    async def _trickle(
        self, conn: h2.connection.H2Connection, writer: asyncio.StreamWriter, stream: int
    ) -> None:
        for _ in range(100):
            await asyncio.sleep(self.every)
            if self.how == "data":
                conn.send_data(stream, b" ")
            else:
                conn.ping(b"12345678")
            writer.write(conn.data_to_send())


@pytest.mark.parametrize("how", ["ping", "data", "ping-only"])
def test_a_server_trickling_frames_cannot_hold_a_send_past_its_timeout(how: str) -> None:
    """httpx's timeout is per read, and each frame started it again: a server sending a PING or a
    byte every 0.2 s held a send with a 0.5 s timeout for ever, and the worker's round with it."""

    async def scenario() -> tuple[DeliveryResult, float, DeliveryResult]:
        async with Trickler(how, every=0.2) as server:
            slow = ApnsConfig(
                team_id=TEAM,
                key_id=KEY_ID,
                private_key=PlainSecret(PEM),
                bundle_id=BUNDLE,
                base_url=server.url,
                timeout=0.5,
            )
            adapter = ApnsAdapter(slow, clock=FakeClock())
            try:
                started = time.monotonic()
                first = await asyncio.wait_for(adapter.send(make_message(FakeClock(), **APNS)), 15.0)
                took = time.monotonic() - started
                return first, took, await adapter.send(make_message(FakeClock(), **APNS))
            finally:
                await adapter.aclose()

    first, took, after = asyncio.run(scenario())
    assert first == DeliveryResult(status="retry", provider_code="Timeout")
    assert took < 10.0  # the trickle goes on for 20 s; a loaded machine's scheduling is not the bug
    assert after.status == "delivered"  # the connection (or a new one) still serves the next send


@pytest.mark.parametrize("status", [200, 400])
def test_an_answer_httpx_cannot_decode_is_a_result_not_an_exception(status: int) -> None:
    """A body labelled gzip that was not gzip raised httpx.DecodingError out of `send`, which caught
    transport errors only. Identity is asked for, as Http1Client does; a garbled answer is a retry."""
    asked: list[str] = []

    def garbled(got: Received) -> Answer:
        asked.append(got.headers.get("accept-encoding", ""))
        return status, {"content-encoding": "gzip"}, b"not gzip at all"

    async def scenario() -> DeliveryResult:
        async with H2cServer(garbled) as server:
            adapter = ApnsAdapter(config(server.url), clock=FakeClock())
            try:
                return await adapter.send(make_message(FakeClock(), **APNS))
            finally:
                await adapter.aclose()

    assert asyncio.run(scenario()) == DeliveryResult(status="retry", provider_code="DecodingError")
    assert asked == ["identity"]


@pytest.mark.parametrize(
    "echoed", ["BadDeviceToken:" + "ab" * 32, "ab" * 32, "user@example.org", "ab" * 8, "Fe" * 12]
)
def test_a_reason_that_is_no_name_is_kept_as_unrecognized(echoed: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, content=json.dumps({"reason": echoed}).encode())

    assert send_with(httpx.MockTransport(handler)) == DeliveryResult(
        status="failed", provider_status=400, provider_code="unrecognized"
    )


def test_a_cookie_apns_sets_is_not_sent_back() -> None:
    """As `Http1Client` keeps none: a cookie is state a provider could tie a push's device to
    the next push's by."""
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "visitor=v1; Path=/"})

    async def scenario() -> None:
        adapter = ApnsAdapter(
            config("http://127.0.0.1:9"), transport=httpx.MockTransport(handler), clock=FakeClock()
        )
        try:
            for _ in range(2):
                assert (await adapter.send(make_message(FakeClock(), **APNS))).status == "delivered"
        finally:
            await adapter.aclose()

    asyncio.run(scenario())
    assert seen == [None, None]


@pytest.mark.parametrize("size", [MAX_ANSWER_BYTES, MAX_ANSWER_BYTES + 1])
def test_an_answer_past_a_mebibyte_is_not_read(size: int) -> None:
    """Read whole into memory, an answer of any length was the provider's to choose; cut where
    `Http1Client` cuts one."""
    pad = b"x" * (size - len(b'{"reason":"BadCollapseId","pad":""}'))
    body = b'{"reason":"BadCollapseId","pad":"' + pad + b'"}'
    assert len(body) == size

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, stream=httpx.ByteStream(body))

    expected = (
        DeliveryResult(status="failed", provider_status=400, provider_code="BadCollapseId")
        if size <= MAX_ANSWER_BYTES
        else DeliveryResult(status="retry", provider_code="AnswerTooLarge")
    )
    assert send_with(httpx.MockTransport(handler)) == expected
