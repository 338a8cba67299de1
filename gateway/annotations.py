"""Our models' type annotations, read where an error must say what a field takes."""

from __future__ import annotations

import re
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec

__all__ = ["bare", "choices", "field_type", "segments"]

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def bare(kind: Any) -> Any:
    """The type under `Annotated[...]` and `| None` (or `| UnsetType`: the first other arm)."""
    while True:
        if get_origin(kind) is Annotated:
            kind = get_args(kind)[0]
        elif isinstance(kind, UnionType) or get_origin(kind) is Union:
            kind = next(arg for arg in get_args(kind) if arg is not type(None))
        else:
            return kind


def segments(path: str) -> list[tuple[str, str]]:
    """A path as msgspec's errors write it (`pushes[3].data`), as (field name, "") and ("", index)."""
    return _SEGMENT.findall(path)


def choices(kind: Any) -> tuple[str, ...]:
    """The values a `Literal` takes, in its order; none for any other type."""
    kind = bare(kind)
    return tuple(str(value) for value in get_args(kind)) if get_origin(kind) is Literal else ()


def field_type(model: Any, path: str) -> Any:
    """The type at `path` (`pushes[3].topic`, as msgspec's errors locate a field) in `model`: the
    struct's fields by their names on the wire, a list's items; None where the path leaves it."""
    kind = bare(model)
    for name, _ in segments(path):
        if name:
            if not (isinstance(kind, type) and issubclass(kind, msgspec.Struct)):
                return None
            found = [f.type for f in msgspec.structs.fields(kind) if f.encode_name == name]
            if not found:
                return None
            kind = bare(found[0])
        else:
            args = get_args(kind)
            if not args:
                return None
            kind = bare(args[0])
    return kind
