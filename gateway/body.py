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
from litestar._openapi.schema_generation import SchemaCreator
from litestar.dto import MsgspecDTO
from litestar.openapi.spec import Reference, Schema
from litestar.typing import FieldDefinition

from gateway.errors import InvalidInput

__all__ = ["Strict"]

T = TypeVar("T", bound=msgspec.Struct)
_PATH = re.compile(r" - at `\$\.?([^`]*)`$")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_KEY = re.compile(r" - at `key` in `\$\.?([^`]*)`$")
_NAMED = re.compile(r"^([a-z_][a-z0-9_.]*): ")


def _field_of(message: str) -> str:
    """The field a msgspec error is about: its path, an unknown key, or the `field: ` prefix
    our own `__post_init__` checks put on their messages."""
    named = _NAMED.match(message)
    if named:
        return named.group(1)
    key = _KEY.search(message)
    if key:
        return key.group(1) or "body"
    match = _PATH.search(message)
    unknown = _UNKNOWN.search(message)
    if match and unknown:
        return f"{match.group(1)}.{unknown.group(1)}" if match.group(1) else unknown.group(1)
    if unknown:
        return unknown.group(1)
    return match.group(1) if match and match.group(1) else "body"


class Strict(MsgspecDTO[T], Generic[T]):
    def decode_bytes(self, value: bytes) -> Any:
        if not value.strip():
            raise InvalidInput("a JSON body is required", "body")
        try:
            return msgspec.json.decode(value, type=self.model_type, strict=True)
        except msgspec.ValidationError as exc:
            raise InvalidInput(str(exc), _field_of(str(exc))) from None
        except (msgspec.DecodeError, RecursionError) as exc:
            raise InvalidInput(f"malformed JSON: {exc}", "body") from None

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        """Describe the model itself: we decode into it directly, and the DTO's generated transfer
        model cannot express constrained optional fields (`Annotated[str, Meta(...)] | None`)."""
        return schema_creator.for_field_definition(
            FieldDefinition.from_annotation(
                cls.model_type, kwarg_definition=field_definition.kwarg_definition
            )
        )
