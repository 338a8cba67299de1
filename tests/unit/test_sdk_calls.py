"""The SDK's retry decisions and answer reading, with a fixed clock and jitter and, where a whole
call is needed, httpx's MockTransport standing in for the gateway."""

from __future__ import annotations

import asyncio
import math
import pickle
import re
from typing import Any

import httpx
import pytest

from clients.sdk import (
    BATCH_MAX,
    AsyncConsentGateway,
    ConsentGateway,
    GatewayError,
    InvalidInput,
    NotFound,
    PushRequest,
    RetryPolicy,
    Unavailable,
    Unreachable,
)
from clients.sdk.calls import create_campaign, get_push, push, push_batch, resolve_complaint
from clients.sdk.retry import Attempts, Safety

KEY = "cgw_0123456789abcdef_secret"
CONNECT = httpx.ConnectError("refused")
READ_TIMEOUT = httpx.ReadTimeout("slow")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def attempts(safety: Safety, clock: Clock | None = None, **policy: Any) -> Attempts:
    return Attempts(RetryPolicy(**policy), safety, clock or Clock(), lambda: 0.999)


def test_idempotent_calls_back_off_exponentially_up_to_the_cap_and_the_attempt_bound() -> None:
    tries = attempts("idempotent", attempts=5, base_delay=1.0, max_delay=3.0, deadline=100.0)
    delays = [tries.after_error(CONNECT), tries.after_status(503), tries.after_error(READ_TIMEOUT)]
    assert delays == pytest.approx([0.999, 1.998, 2.997])
    assert tries.after_status(502) == pytest.approx(2.997)
    assert tries.after_status(503) is None  # five made
    assert tries.made == 5


@pytest.mark.parametrize("status", [200, 400, 401, 404, 409, 422, 500])
def test_answers_other_than_502_503_504_end_the_call(status: int) -> None:
    assert attempts("idempotent").after_status(status) is None


def test_a_retry_after_is_a_floor_under_the_backoff_and_within_the_deadline() -> None:
    """The gateway's 503 for a busy storage lock says when to come back (`Retry-After: 1`)."""
    tries = attempts("idempotent", base_delay=0.5, deadline=30.0)
    assert tries.after_status(503, "3") == pytest.approx(3 * (1 + 0.25 * 0.999))  # not the backoff's 0.4995
    assert tries.after_status(503, "0") == pytest.approx(0.999)  # the backoff when it is longer
    assert tries.after_status(503, "soon") == pytest.approx(1.998)  # garbled: plain backoff
    assert tries.after_status(503, "60") is None  # would start past the deadline
    assert attempts("idempotent").after_status(400, "1") is None  # never a reason to retry a 4xx


def test_a_retry_after_that_fits_the_deadline_is_waited_whatever_the_spread() -> None:
    """25 s fits the 30 s deadline; its spread (31 s) did not, and the call gave up at random."""
    assert attempts("idempotent", deadline=30.0).after_status(503, "25") == pytest.approx(25.0)


def test_no_retry_starts_after_the_deadline() -> None:
    clock = Clock()
    tries = attempts("idempotent", clock, base_delay=1.0, deadline=5.0)
    assert tries.after_error(CONNECT) is not None
    clock.now += 4.5
    assert tries.after_error(CONNECT) is None  # 4.5 s gone + a 2 s wait > 5 s


def test_calls_that_could_happen_twice_are_retried_only_when_never_sent() -> None:
    tries = attempts("unsent_only")
    assert tries.after_error(CONNECT) is not None
    assert tries.after_error(httpx.PoolTimeout("busy")) is not None
    assert tries.after_error(READ_TIMEOUT) is None
    assert tries.after_status(503) is None
    assert "may have reached" in tries.gave_up(READ_TIMEOUT)
    assert "may have reached" not in tries.gave_up(CONNECT)


def test_a_policy_needs_a_first_try() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("base_delay", math.nan), ("max_delay", math.nan), ("deadline", math.nan), ("base_delay", math.inf),
     ("deadline", -1.0)],
)  # fmt: skip
def test_a_policy_refuses_delays_it_cannot_wait(field: str, value: float) -> None:
    """NaN passed the check for negatives and failed in `time.sleep` after the first try was
    sent (or, as the deadline, turned the deadline off)."""
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]  # floats, and `attempts` is not among them


def test_a_huge_attempt_count_does_not_overflow_the_backoff() -> None:
    tries = attempts("idempotent", attempts=10_000, base_delay=0.0, max_delay=0.0)
    assert all(tries.after_error(CONNECT) == 0.0 for _ in range(2_000))


def test_an_answer_not_in_the_gateways_shape_keeps_its_status() -> None:
    call = get_push("psh_1")
    with pytest.raises(GatewayError) as proxy:
        call.read(502, b"<html>Bad Gateway</html>", "Bad Gateway")
    assert type(proxy.value) is GatewayError
    assert (proxy.value.status_code, proxy.value.detail) == (502, "Bad Gateway")

    with pytest.raises(GatewayError) as odd:
        call.read(200, b'{"push_id": 7}', "OK")
    assert odd.value.status_code == 200
    assert "cannot read" in odd.value.detail


def test_the_first_named_field_of_the_error_shape_is_the_field() -> None:
    extra = b'[{"message": "m"}, {"key": "title", "message": "m"}]'
    body = b'{"status_code": 400, "detail": "bad", "extra": ' + extra + b"}"
    with pytest.raises(InvalidInput) as bad:
        get_push("x").read(400, body, "Bad Request")
    assert (bad.value.detail, bad.value.field) == ("bad", "title")
    with pytest.raises(Unavailable) as full:
        get_push("x").read(503, b'{"status_code": 503, "detail": "storage is unavailable"}', "")
    assert full.value.field is None


def test_requests_keep_the_base_path_and_carry_the_key() -> None:
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"status_code": 404, "detail": "no such push"})

    with (
        httpx.Client(transport=httpx.MockTransport(gateway)) as http,
        ConsentGateway("https://example.test/cgw/", KEY, client=http) as sdk,
        pytest.raises(NotFound),
    ):
        sdk.get_push("psh_0123abcd")
    assert len(seen) == 1  # a 404 is not retried
    assert seen[0].url.raw_path == b"/cgw/v1/pushes/psh_0123abcd"
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(sdk)


@pytest.mark.parametrize("bad", ["../admin", "..", ".", "", "cmp_1/stats", "cmp_1%2Fstats", "a b", "x" * 65])
def test_an_id_not_of_the_gateways_shape_is_refused_before_sending(bad: str) -> None:
    """Quoting kept no id to its route: the server decodes `%2F` before routing, so
    `get_campaign("cmp_1/stats")` read the stats as a campaign; an empty id reached the route
    above (a 405), and httpx resolved `..` into another route."""

    def no_network(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing should be sent")

    with (
        httpx.Client(transport=httpx.MockTransport(no_network)) as http,
        ConsentGateway("https://example.test/cgw/", KEY, client=http) as sdk,
    ):
        calls = [
            (sdk.get_push, "push_id"),
            (sdk.get_campaign, "campaign_id"),
            (sdk.pause_campaign, "campaign_id"),
            (sdk.acknowledge_complaint, "complaint_id"),
        ]
        for call, name in calls:
            with pytest.raises(ValueError, match=rf"^{name}: "):
                call(bad)


def test_batches_out_of_bounds_and_keys_that_are_not_api_keys_are_refused_before_sending() -> None:
    def no_network(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing should be sent")

    item = PushRequest(idempotency_key="k", user_id="u", topic="transactional", title="t", body="b")
    with httpx.Client(transport=httpx.MockTransport(no_network)) as http:
        sdk = ConsentGateway("https://example.test", KEY, client=http)
        for pushes in ([], [item] * (BATCH_MAX + 1)):
            with pytest.raises(ValueError, match="pushes"):
                sdk.push_batch(pushes)
        with pytest.raises(ValueError, match="api_key"):
            ConsentGateway("https://example.test", "eyJhbGciOi.user.token", client=http)


HUGE_RETRY_AFTER = ["9" * 400, "9" * 5000, "01 Jan 99999999999 00:00:00 GMT"]
BUSY = {"status_code": 503, "detail": "storage is unavailable"}
QUICK = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0)


@pytest.mark.parametrize("retry_after", HUGE_RETRY_AFTER, ids=["400 digits", "5000 digits", "year 1e11"])
def test_a_retry_after_too_large_to_read_is_plain_backoff_then_unavailable(retry_after: str) -> None:
    """Reading it raised OverflowError (or ValueError) out of the call instead of the SDK's own error."""
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503, json=BUSY, headers={"retry-after": retry_after})

    with (
        httpx.Client(transport=httpx.MockTransport(gateway)) as http,
        ConsentGateway("https://example.test", KEY, client=http, retry=QUICK) as sdk,
        pytest.raises(Unavailable),
    ):
        sdk.get_push("psh_1")
    assert len(seen) == 2  # retried once with plain backoff, as for a garbled header


def test_the_async_client_too_answers_a_huge_retry_after_with_unavailable() -> None:
    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json=BUSY, headers={"retry-after": HUGE_RETRY_AFTER[0]})

    async def call() -> None:
        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as http,
            AsyncConsentGateway("https://example.test", KEY, client=http, retry=QUICK) as sdk,
        ):
            await sdk.get_push("psh_1")

    with pytest.raises(Unavailable):
        asyncio.run(call())


@pytest.mark.parametrize("key", [KEY + "\n", KEY + " ", "cgw_abcd_SËCRET", "cgw_abcd secret"])
def test_a_malformed_key_is_refused_without_being_repeated(key: str) -> None:
    """httpx refused a key with a line break by quoting the whole header, which the SDK then put
    in the `Unreachable` it raised (and a non-ASCII key raised a bare UnicodeEncodeError)."""
    with pytest.raises(ValueError, match="api_key") as refused:
        ConsentGateway("http://127.0.0.1:9", key)
    assert key.split("_")[-1].strip() not in str(refused.value)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://svc:hunter2@127.0.0.1:9",
        "http://127.0.0.1:9\n",
        " http://127.0.0.1:9",
        "ftp://127.0.0.1:9",
        "127.0.0.1:9",
        "http://127.0.0.1:9/?via=hunter2",
        "http://127.0.0.1:9/#hunter2",
        "http://127.0.0.1:9/?",
        "http://127.0.0.1:9/#",
    ],
)
def test_a_base_url_holding_more_than_where_the_gateway_is_is_refused(base_url: str) -> None:
    """A password in it made httpx send Basic auth instead of the key (every call refused) and
    put it in the client's repr and httpx's log lines; a line break failed only at the first call."""
    for client in (ConsentGateway, AsyncConsentGateway):
        with pytest.raises(ValueError, match=r"^base_url: ") as refused:
            client(base_url, KEY)
        assert "hunter2" not in str(refused.value)


def test_a_base_url_under_a_path_keeps_it() -> None:
    with ConsentGateway("https://gw.example/consent/", KEY) as gateway:
        assert repr(gateway) == "ConsentGateway('https://gw.example/consent')"


@pytest.mark.parametrize(
    "error",
    [
        GatewayError(502, "Bad Gateway"),
        GatewayError(500, "Internal Server Error", "title"),
        InvalidInput("title too long", "title"),
        NotFound("no such push"),
        Unavailable("storage is unavailable"),
        Unreachable("no answer from the gateway after 4 attempt(s): ConnectError: refused"),
    ],
)
def test_an_error_survives_a_trip_through_pickle(error: GatewayError) -> None:
    """A process pool sends a worker's exception back pickled: the base kind failed to unpickle
    (the pool broke), and the others came back as '400: 400: ...'."""
    error.retry_after = 7.0
    back = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, just made
    assert type(back) is type(error)
    assert (back.status_code, back.detail, back.field, str(back), back.retry_after) == (
        error.status_code, error.detail, error.field, str(error), 7.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "header", "kind", "wait"),
    [
        (503, "7", Unavailable, 7.0),  # left after the SDK's own retries (here none)
        (429, "Wed, 21 Oct 2099 07:28:00 GMT", GatewayError, None),  # a proxy's, far off: a date
        (400, None, InvalidInput, None),
    ],
)
def test_an_error_carries_the_answers_retry_after(
    status: int, header: str | None, kind: type[GatewayError], wait: float | None
) -> None:
    """So a service's own retry can honour it: the SDK dropped it with the answer."""

    def gateway(request: httpx.Request) -> httpx.Response:
        headers = {} if header is None else {"retry-after": header}
        return httpx.Response(status, json={"status_code": status, "detail": "busy"}, headers=headers)

    with (
        httpx.Client(transport=httpx.MockTransport(gateway)) as http,
        ConsentGateway("https://example.test", KEY, client=http, retry=RetryPolicy(attempts=1)) as sdk,
        pytest.raises(kind) as raised,
    ):
        sdk.get_push("psh_0123abcd")
    if header is not None and not header.isdigit():
        assert raised.value.retry_after is not None
        assert raised.value.retry_after > 86_400  # the date, as seconds from now
    else:
        assert raised.value.retry_after == wait


def _push(**fields: Any) -> PushRequest:
    return PushRequest(**{"idempotency_key": "k", "topic": "promotions", "title": "t", "body": "b", **fields})


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: push(_push(title="Sale \ud83d")), "title"),
        (lambda: push(_push(user_id="\udc00")), "user_id"),
        (lambda: push(_push(data={"deeplink": "wallet://\ud800"})), "data.deeplink"),
        (lambda: push(_push(data={"deep\ud800": "x"})), "data"),
        (lambda: push_batch([_push(body="b\ud800" if i == 2 else "b") for i in range(3)]), "pushes[2].body"),
        (lambda: create_campaign("Winter \udfff", "promotions"), "name"),
        (lambda: resolve_complaint("cpl_1", "done \ud800"), "resolution"),
    ],
)
def test_text_holding_half_a_character_is_refused_naming_its_field(call: Any, field: str) -> None:
    """Text cut between the two halves of an emoji cannot be UTF-8: msgspec's UnicodeEncodeError
    named a position, not the argument (README, "Errors": a ValueError naming it)."""
    with pytest.raises(ValueError, match=rf"^{re.escape(field)}: text holding half a character"):
        call()


def test_the_timeout_may_be_httpx_s_own() -> None:
    """The README calls it httpx's; typed a float, `httpx.Timeout(5, connect=2)` worked but failed
    a service's `mypy --strict` (which `make typecheck` runs on this file)."""
    timeout = httpx.Timeout(5.0, connect=2.0)
    with ConsentGateway("https://example.test", KEY, timeout=timeout) as sdk:
        assert sdk._http.timeout == timeout

    async def made() -> httpx.Timeout:
        async with AsyncConsentGateway("https://example.test", KEY, timeout=timeout) as sdk:
            return sdk._http.timeout

    assert asyncio.run(made()) == timeout
