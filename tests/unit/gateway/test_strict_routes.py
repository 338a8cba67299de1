"""A route declared `dto=Strict[Model]` takes `data: Model`: one that says another type is
refused when the app is built, as Litestar refuses it for its own DTOs, rather than handed a
`Model` where its signature promised something else."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar import Litestar, post
from litestar.exceptions import InvalidAnnotationException
from litestar.params import JSONBody

from gateway.body import Strict


class Asked(msgspec.Struct):
    name: str


class Other(msgspec.Struct):
    count: int


def test_a_route_whose_data_is_not_the_model_is_refused_at_build() -> None:
    @post("/", dto=Strict[Asked], return_dto=None)
    async def handler(data: JSONBody[Other]) -> None: ...

    with pytest.raises(InvalidAnnotationException, match="handler type"):
        Litestar(route_handlers=[handler])


def test_a_route_whose_data_is_the_model_is_built() -> None:
    @post("/", dto=Strict[Asked], return_dto=None)
    async def handler(data: JSONBody[Asked]) -> None: ...

    Litestar(route_handlers=[handler])


class Narrower(Asked):
    pass


@pytest.mark.parametrize("taken", [list[Asked], tuple[Asked, ...], dict[str, Asked], Narrower])
def test_a_route_taking_a_collection_or_a_subclass_of_the_model_is_refused(taken: object) -> None:
    """Review of b34e2e9: Litestar's own check looks through collections and accepts subclasses,
    and such a handler was given a bare model."""

    async def handler(data: Any) -> None: ...

    handler.__annotations__ = {"data": JSONBody[taken], "return": None}  # type: ignore[misc,valid-type]
    with pytest.raises(InvalidAnnotationException, match="handler type"):
        Litestar(route_handlers=[post("/", dto=Strict[Asked], return_dto=None)(handler)])


def test_an_optional_body_of_the_model_is_built() -> None:
    @post("/", dto=Strict[Asked], return_dto=None)
    async def handler(data: JSONBody[Asked | None]) -> None: ...

    Litestar(route_handlers=[handler])


def test_a_route_that_would_answer_through_strict_is_refused_at_build() -> None:
    """Review of c892d5c: with no backend built, such a route was built and answered 500."""

    @post("/", dto=Strict[Asked])
    async def handler(data: JSONBody[Asked]) -> Asked:
        return data

    with pytest.raises(InvalidAnnotationException, match="return_dto=None"):
        Litestar(route_handlers=[handler])
