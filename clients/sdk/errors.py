"""What the SDK raises, so a service catches one base and branches on the kind it cares about.

    GatewayError                 status_code, detail, field (the bad field, or None), retry_after
    ├── InvalidInput      400    a value the gateway does not accept; `field` names it
    ├── NotAuthenticated  401    no, bad or revoked API key
    ├── Forbidden         403    the key lacks the scope
    ├── NotFound          404    no such push, campaign or complaint for this caller
    ├── Conflict          409    e.g. a complaint already past this step
    ├── Unprocessable     422    e.g. an idempotency key reused with another body
    ├── Unavailable       503    storage full, busy or failed, or batches busy; raised once
    │                            retries are spent (at once by calls never retried on an
    │                            answer: campaigns, complaints)
    └── Unreachable       —      no answer at all (refused, timed out, cut); status_code None

A policy refusal is not an error: a rejected push is a `PushAnswer` with reasons. Any other
status (a proxy's 502, a 500) is a plain `GatewayError` with that status.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

__all__ = [
    "Conflict",
    "Forbidden",
    "GatewayError",
    "InvalidInput",
    "NotAuthenticated",
    "NotFound",
    "Unavailable",
    "Unprocessable",
    "Unreachable",
    "error_from_answer",
]


class GatewayError(Exception):
    retry_after: float | None = None
    """Seconds the answer's `Retry-After` asked for (a 503 left after the SDK's own retries, a
    proxy's 429), or None: the caller's own retry can honour it."""

    def __init__(self, status_code: int | None, detail: str, field: str | None = None) -> None:
        super().__init__(f"{status_code}: {detail}" if status_code is not None else detail)
        self.status_code = status_code
        self.detail = detail
        self.field = field

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled by its fields, not its message (`args`), which no subclass's `__init__` takes:
        raised in a process pool's worker, it reached the caller as a TypeError, or with its
        status said twice."""
        return _restore, (type(self), self.status_code, self.detail, self.field, self.retry_after)


def _restore(
    kind: type[GatewayError],
    status_code: int | None,
    detail: str,
    field: str | None,
    retry_after: float | None,
) -> GatewayError:
    error = kind.__new__(kind)
    GatewayError.__init__(error, status_code, detail, field)
    error.retry_after = retry_after
    return error


class _Answered(GatewayError):
    """A kind the gateway answers with; the subclass fixes the status."""

    status: ClassVar[int]

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(self.status, detail, field)


class InvalidInput(_Answered):
    status = 400


class NotAuthenticated(_Answered):
    status = 401


class Forbidden(_Answered):
    status = 403


class NotFound(_Answered):
    status = 404


class Conflict(_Answered):
    status = 409


class Unprocessable(_Answered):
    status = 422


class Unavailable(_Answered):
    status = 503


class Unreachable(GatewayError):
    """The last transport error is the `__cause__`."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, detail)


_KINDS: dict[int, type[_Answered]] = {
    kind.status: kind
    for kind in (InvalidInput, NotAuthenticated, Forbidden, NotFound, Conflict, Unprocessable, Unavailable)
}


class _Item(msgspec.Struct):
    key: str | None = None
    message: str = ""


class _Problem(msgspec.Struct):
    """The gateway's one error shape `{"status_code", "detail", "extra"?}`."""

    detail: str
    extra: list[_Item] | None = None


def error_from_answer(
    status_code: int, content: bytes, reason_phrase: str, retry_after: float | None = None
) -> GatewayError:
    """The exception for an answer that is not a success. A body not in the gateway's shape
    (a proxy's HTML page) still gives the status and the reason phrase."""
    try:
        problem = msgspec.json.decode(content, type=_Problem)
    except msgspec.DecodeError:
        detail, field = reason_phrase or f"HTTP {status_code}", None
    else:
        detail = problem.detail
        field = next((item.key for item in problem.extra or [] if item.key), None)
    kind = _KINDS.get(status_code)
    error = kind(detail, field) if kind is not None else GatewayError(status_code, detail, field)
    error.retry_after = retry_after
    return error
