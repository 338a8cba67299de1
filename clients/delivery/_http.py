"""How every HTTP adapter turns an answer or a network failure into a `DeliveryResult`.

Each provider adds its own invalid-token rules first; what is left is classified the same way
everywhere, so the worker's retry and breaker behaviour does not depend on the provider.
"""

from __future__ import annotations

import itertools

import httpx

from clients.delivery.base import Clock, DeliveryResult
from clients.delivery.retry import parse_retry_after

_TRANSIENT = frozenset({408, 425, 429})
POOL_CLIENTS = 8
CONNECTIONS_PER_CLIENT = 8


class ClientPool:
    """Several small httpx clients, taken in turn, instead of one with the whole worker round.

    httpcore scans every queued request against every connection for each request it places
    (encode/httpcore#1035): one client with the worker's 64 sends in flight cost ~12 ms of CPU
    per request on our bench machine, eight clients of eight connections ~1 ms. 8 x 8 keeps
    the 64 connections the worker's default round needs. A test's transport gets one client.
    """

    def __init__(self, timeout: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if transport is not None:
            self._clients = [httpx.AsyncClient(transport=transport, timeout=timeout)]
        else:
            limits = httpx.Limits(
                max_connections=CONNECTIONS_PER_CLIENT, max_keepalive_connections=CONNECTIONS_PER_CLIENT
            )
            self._clients = [httpx.AsyncClient(timeout=timeout, limits=limits) for _ in range(POOL_CLIENTS)]
        self._turns = itertools.cycle(self._clients)

    def client(self) -> httpx.AsyncClient:
        return next(self._turns)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


def classify_status(response: httpx.Response, now: Clock, code: str | None = None) -> DeliveryResult:
    """2xx delivered; 408/425/429 and 5xx retry (honouring Retry-After); any other status failed."""
    status = response.status_code
    if 200 <= status < 300:
        return DeliveryResult(status="delivered", provider_status=status, provider_code=code)
    if status in _TRANSIENT or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now())
        return DeliveryResult(
            status="retry", retry_after=retry_after, provider_status=status, provider_code=code
        )
    return DeliveryResult(status="failed", provider_status=status, provider_code=code)


def transport_failure(exc: httpx.TransportError) -> DeliveryResult:
    """Timeouts, refused connections, protocol errors: transient. The class name is safe to log."""
    return DeliveryResult(status="retry", provider_code=type(exc).__name__)


def invalid_token(response: httpx.Response, code: str | None) -> DeliveryResult:
    return DeliveryResult(status="invalid_token", provider_status=response.status_code, provider_code=code)


def ttl_seconds(expires_at: float, now: float) -> int:
    """Whole seconds left to live, never negative (0 = deliver now or drop)."""
    return max(0, int(expires_at - now))
