"""Strict request bodies.

Litestar converts bodies laxly (the string "false" becomes False). A consent must never be
granted by a string, so every body is declared as `dto=Strict[Model]`: the bytes are decoded
once with `msgspec.json.decode(..., strict=True)`, and msgspec's own error path
(``Expected `bool`, got `str` - at `$.granted` ``) becomes the 400's detail and names the field.
Only a body msgspec accepted is then scanned for repeated keys: the model bounds how many
objects such a body holds (three per push), while a 64 MiB body of `[{},{},...]` scanned first
cost the event loop seconds and the process gigabytes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from operator import itemgetter
from typing import Any, Generic, TypeVar, get_args

import msgspec
from litestar import Request
from litestar._openapi.schema_generation import SchemaCreator
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.dto import MsgspecDTO
from litestar.dto._backend import DTOBackend
from litestar.exceptions import InvalidAnnotationException
from litestar.openapi.spec import Reference, Schema
from litestar.typing import FieldDefinition

from gateway.annotations import bare, choices, field_type, segments
from gateway.errors import InvalidInput, UnsupportedMediaType, client_text
from policies.pii import find_pii_in_label

__all__ = ["ClosedStructs", "Strict", "decode_strict", "refuse_unread_body"]

T = TypeVar("T", bound=msgspec.Struct)
_PATH = re.compile(r" - at `\$\.?([^`]*)`$")
_KEY = re.compile(r" - at `key` in `\$\.?([^`]*)`$")
# The whole name, up to the backtick before msgspec's ` - at ` or the message's end: a key may
# hold backticks itself, and `x` bob@example.com` was read as `x`, found nameable, and left whole.
_LEAF = re.compile(r"(?:unknown|missing required) field `(.+?)`(?= - at `|$)")
_NAMED = re.compile(r"^([a-z_][a-z0-9_.]*): ")


# A key's name as a refusal may repeat it: a field's or a data key's shape, with no personal data.
# A body's keys are the sender's text: `{"bob@example.com": 1}` was answered "unknown field
# `bob@example.com`", where values are never repeated (`client_text`). Such a key is not named;
# the refusal names the object that holds it.
_NAME_SHAPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_UNNAMED = "(a name not repeated)"


def _nameable(name: str) -> bool:
    return _NAME_SHAPE.fullmatch(name) is not None and not find_pii_in_label(name)


def _field_of(message: str) -> str:
    """The field a msgspec error is about, as a path like `pushes[1].user_id`: msgspec's
    location, plus the field it names (unknown or missing), or the `field: ` prefix our own
    `__post_init__` checks put on their messages."""
    key = _KEY.search(message)
    if key:
        return key.group(1) or "body"
    path = _PATH.search(message)
    where = path.group(1) if path else ""
    leaf = _LEAF.search(message) or _NAMED.match(message)
    if leaf and _nameable(leaf.group(1)):
        return f"{where}.{leaf.group(1)}" if where else leaf.group(1)
    return where or "body"


def _unnamed_leaf(message: str) -> str:
    """The message without the unknown field's name when that may not be repeated."""
    leaf = _LEAF.search(message)
    if leaf and not _nameable(leaf.group(1)):
        return message.replace(f"`{leaf.group(1)}`", _UNNAMED, 1)
    return message


def _pairs(items: list[tuple[str, Any]]) -> None:
    """Checks one object and keeps nothing of it: the scan needs no tree, only its verdict."""
    if len(dict(items)) != len(items):  # in C, as is naming the repeat: one key 10^6 times is cheap
        name = _repeated(items)
        shown = f"`{name}`" if _nameable(name) else _UNNAMED
        raise InvalidInput(f"duplicate key {shown} in the JSON body", name)


def _repeated(items: list[tuple[str, Any]]) -> str:
    """A key the object holds more than once (the first such, in its order)."""
    counts: Counter[str] = Counter(map(itemgetter(0), items))
    return next(name for name, count in counts.items() if count > 1)


# One decoder for every body: `json.loads` with a hook builds a decoder and its scanner on each
# call, about 40% of the check on a single push's body (10.5 µs against 6.4, a loaded machine).
_DUPLICATE_KEYS = json.JSONDecoder(object_pairs_hook=_pairs)


def _refuse_duplicate_keys(raw: bytes) -> None:
    """`{"granted": false, "granted": true}` means different things to different parsers (msgspec
    keeps the last); a consent must not depend on which one reads it, so such bodies are refused."""
    try:
        _DUPLICATE_KEYS.decode(raw.decode())
    except InvalidInput as repeated:
        raise InvalidInput(repeated.detail, _where_repeated(raw.decode())) from None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return  # malformed JSON (or not UTF-8): msgspec reports it with its position


_MOST_PAIRS = 100  # a push's fields and its 64 data keys, with room: more pairs means repeats


class _Object(list[tuple[str, Any]]):
    """An object's pairs in order, repeats kept."""


def _where_repeated(text: str) -> str:
    """The repeated key's path (`pushes[3].title`, `data.deeplink`): the scan above keeps no tree,
    so on this rare path the body is parsed again into one, which msgspec's model bounds."""
    found = _first_repeat(json.loads(text, object_pairs_hook=_Object), "")
    return found or "body"


def _first_repeat(node: Any, path: str) -> str | None:
    """In parse order, as the scan found it: an object's members before the object itself. An
    object of more pairs than any the models hold is named at once, its members unvisited: one
    key repeated millions of times cost seconds walked pair by pair."""
    if isinstance(node, list) and not isinstance(node, _Object):
        return next(
            (hit for i, item in enumerate(node) if (hit := _first_repeat(item, f"{path}[{i}]"))), None
        )
    if not isinstance(node, _Object):
        return None
    if len(node) > _MOST_PAIRS:
        return _member(path, _repeated(node))
    for name, value in node:
        if hit := _first_repeat(value, _member(path, name)):
            return hit
    names: set[str] = set()
    for name, _ in node:
        if name in names:
            return _member(path, name)
        names.add(name)
    return None


def _member(path: str, name: str) -> str:
    """The path of an object's member, or of the object when the name may not be repeated."""
    if not _nameable(name):
        return path or "body"
    return f"{path}.{name}" if path else name


# Naming the key parses the body again into a tree: for a push's body (its edge limits come to
# ~25 KiB), not a batch's of up to 64 MiB, which took seconds of the event loop and gigabytes.
_NAMING_MAX_BYTES = 64 * 1024


def _named_value(raw: bytes, model: type, path: str) -> str:
    """`data.deeplink` for msgspec's `data[...]` (and `allowed_data_keys.promotions[1]` for
    `allowed_data_keys[...][1]`): it names no key of a mapping whose value it refused, and a
    client routing on the field learned only that some value was wrong. On this rare path the
    body is parsed again and each value of that mapping checked against the model's type for
    it; `path` as it was if the walk finds nothing."""
    prefix, _, rest = path.partition("[...]")
    try:
        node, kind = json.loads(raw), bare(model)
        for name, index in segments(prefix):
            if name:
                field = next(f for f in msgspec.structs.fields(kind) if f.encode_name == name)
                node, kind = node[name], bare(field.type)
            else:
                node, kind = node[int(index)], bare(get_args(kind)[0])
        value_type = get_args(kind)[1]
        for key, value in node.items():
            try:
                msgspec.convert(value, value_type, strict=True)
            except msgspec.ValidationError:
                return f"{prefix}.{key}{rest}" if _nameable(key) else prefix
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, StopIteration, RecursionError):
        pass
    return path


def decode_strict(raw: bytes, model: type[T]) -> T:
    """`raw` as a `model`, or `InvalidInput` naming the field at fault."""
    if not raw.strip():
        raise InvalidInput("a JSON body is required", "body")
    try:
        decoded = msgspec.json.decode(raw, type=model, strict=True)
    except msgspec.ValidationError as exc:
        field = _field_of(str(exc))
        message = client_text(_unnamed_leaf(str(exc)))
        if message.startswith("Invalid enum value"):
            message += _one_of(model, field, key=_KEY.search(str(exc)) is not None)
        if "[...]" in field and len(raw) <= _NAMING_MAX_BYTES:
            field = _named_value(raw, model, field)
        raise InvalidInput(message, field) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidInput(f"malformed JSON: {exc}", "body") from None
    _refuse_duplicate_keys(raw)
    return decoded


def _one_of(model: type, field: str, *, key: bool) -> str:
    """What the refused value could have been (the topics, the platforms...): the message names
    the field but not, without the value it refused, what it takes. `key`: a mapping's key."""
    kind = field_type(model, field)
    if key:
        args = get_args(kind)
        kind = args[0] if len(args) == 2 else None
    values = choices(kind)
    return f"; one of: {', '.join(values)}" if values else ""


def _refuse_other_media(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """A body its client declares as something else (a form, text) is refused, not read as JSON
    anyway: `text/plain` holding `{"granted": true}` granted a consent. No `Content-Type` at all
    is read as JSON, which the strict decoding holds it to (RFC 9110 lets a recipient look)."""
    for name, value in headers:
        if name == b"content-type":
            media, _, parameters = value.lower().partition(b";")
            media = media.strip()
            if media != b"application/json" and not media.endswith(b"+json"):
                raise UnsupportedMediaType(
                    "the body must be JSON: Content-Type application/json", "content-type"
                )
            if _charset(parameters) not in (None, b"utf-8", b"utf8", b"us-ascii"):
                # JSON is UTF-8 (RFC 8259): a body declared UTF-16 was read as UTF-8 anyway.
                raise UnsupportedMediaType("the body must be UTF-8 JSON: no other charset", "content-type")
        elif name == b"content-encoding" and value.strip().lower() not in (b"identity", b""):
            # Decoded by nobody: a gzip body read as it came (RFC 9110, section 15.5.16).
            raise UnsupportedMediaType(
                "the body must be sent unencoded: no Content-Encoding", "content-encoding"
            )


def _charset(parameters: bytes) -> bytes | None:
    """The `charset` a media type's parameters declare (`; charset="utf-8"`), or None."""
    for parameter in parameters.split(b";"):
        name, _, value = parameter.partition(b"=")
        if name.strip() == b"charset":
            return value.strip().strip(b'"')
    return None


async def refuse_unread_body(request: Request[Any, Any, Any]) -> None:
    """`before_request`, under `/v1/`: a body sent to a route that reads none is refused 400
    naming `body`, not ignored. `DELETE /v1/me` with `{"dry_run": true}` erased the user, and a
    key rotation or a campaign's pause went ahead whatever their body asked, where the same name
    in the query was refused (`gateway.query`). A declared length says it before a byte is read
    (zero, however written, is no body); a chunked one, as a proxy turning HTTP/2 into HTTP/1.1
    sends, is read to see whether it holds a byte."""
    if (
        not request.scope["path"].startswith("/v1/")
        or "data" in request.route_handler.parsed_fn_signature.parameters
    ):
        return
    headers = dict(request.scope["headers"])
    length = headers.get(b"content-length")
    if length is not None:
        sent = not length.strip().isdigit() or int(length) > 0
    else:
        sent = b"transfer-encoding" in headers and bool(await request.body())
    if sent:
        raise InvalidInput("body: this route takes no body", "body")


class ClosedStructs(StructSchemaPlugin):
    """Litestar's own schema of a Struct, with `additionalProperties: false` where the model
    refuses unknown fields: the document said any other member was allowed, so a client built
    from it (or a fuzzer) sent bodies the server answered 400."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        if field_definition.type_.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        return schema


class Strict(MsgspecDTO[T], Generic[T]):
    def decode_bytes(self, value: bytes) -> Any:
        _refuse_other_media(self.asgi_connection.scope["headers"])
        return decode_strict(value, self.model_type)

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: type[DTOBackend] | None = None
    ) -> None:
        """Check the route takes `data: Model` (or `Model | None`), and build no transfer backend:
        the bytes are decoded above and the schema described below, so the generated backend was
        never used, yet it cost a third of building an app and stayed in a class-level cache keyed
        by handler and app (every test's app, kept to the end). Without one, Strict cannot encode
        an answer: a route must say `return_dto=None`."""
        if field_definition.name != "data":
            raise InvalidAnnotationException("Strict is for request bodies: set return_dto=None")
        taken = [field_definition.annotation]
        if field_definition.is_optional:
            taken = [t.annotation for t in field_definition.inner_types if not t.is_none_type]
        if taken != [cls.model_type]:
            raise InvalidAnnotationException(
                f"DTO narrowed with '{cls.model_type}', handler type is '{field_definition.annotation}'"
            )

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
