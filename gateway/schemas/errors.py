"""The one shape of every refusal (4xx) and of 503, as `gateway.errors` writes it: Litestar's
`{"status_code", "detail", "extra"?}`, with `extra` naming the field or parameter at fault.

Only the OpenAPI document uses these types (`gateway.routes.refusals`); the answers themselves
are built by `gateway.errors.refusal`, in this shape.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

__all__ = ["ErrorField", "ErrorRead"]


class ErrorField(msgspec.Struct, kw_only=True):
    """What was wrong with one field or parameter."""

    key: Annotated[
        str,
        Meta(
            description="The field (`frequency.max_per_week`, `pushes[3].user_id`), parameter (`limit`) "
            "or header (`If-Match`, `Authorization`) at fault; `body` for the body as a whole."
        ),
    ]
    message: str


class ErrorRead(msgspec.Struct, kw_only=True):
    """A refusal: nothing was written. `extra`, when present, names what was at fault."""

    status_code: int
    detail: Annotated[str, Meta(description="What was wrong, for a person to read.")]
    extra: list[ErrorField] | UnsetType = UNSET
