"""Strict request bodies.

Litestar converts bodies laxly (the string "false" becomes False). A consent must never be
granted by a string, so every body is declared as `dto=Strict[Model]`: the bytes are decoded
once with `msgspec.json.decode(..., strict=True)`, and msgspec's own error path
(``Expected `bool`, got `str` - at `$.granted` ``) becomes the 400's detail and names the field.
"""

from __future__ import annotations

import re
from typing import Any, Generic, TypeVar

import msgspec
from litestar.dto import MsgspecDTO

from gateway.errors import InvalidInput

__all__ = ["Strict"]

T = TypeVar("T", bound=msgspec.Struct)
_PATH = re.compile(r" - at `\$\.?([^`]*)`$")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_NAMED = re.compile(r"^([a-z_][a-z0-9_.]*): ")


def _field_of(message: str) -> str:
    """The field a msgspec error is about: its path, an unknown key, or the `field: ` prefix
    our own `__post_init__` checks put on their messages."""
    named = _NAMED.match(message)
    if named:
        return named.group(1)
    match = _PATH.search(message)
    unknown = _UNKNOWN.search(message)
    if match and unknown:
        return f"{match.group(1)}.{unknown.group(1)}" if match.group(1) else unknown.group(1)
    if unknown:
        return unknown.group(1)
    return match.group(1) if match and match.group(1) else "body"


class Strict(MsgspecDTO[T], Generic[T]):
    def decode_bytes(self, value: bytes) -> Any:
        try:
            return msgspec.json.decode(value, type=self.model_type, strict=True)
        except msgspec.ValidationError as exc:
            raise InvalidInput(str(exc), _field_of(str(exc))) from None
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"malformed JSON: {exc}", "body") from None
