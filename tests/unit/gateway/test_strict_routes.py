"""A route declared `dto=Strict[Model]` takes `data: Model`: one that says another type is
refused when the app is built, as Litestar refuses it for its own DTOs, rather than handed a
`Model` where its signature promised something else."""

from __future__ import annotations

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
