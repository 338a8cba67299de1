"""Route decorators whose guards are handed the route handler itself.

Litestar calls each guard with a shallow copy of the route handler (`copy(self)`, so that a guard
cannot change the handler for the requests after it). A handler has some sixty attributes, and
the copy was ~4% of a single push's CPU, paid on every guarded request. Our guards
(gateway.guards) read the connection's principal and never look at the handler, so they get the
handler as it is. Every route takes its decorator from here, guarded or not: one way to declare
one. They are functions over Litestar's `HTTPRouteHandler`, as Litestar 3's own will be: it
deprecates subclassing its `get`, `post`... classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler

__all__ = ["RouteHandler", "delete", "get", "patch", "post", "put"]

Path = str | Sequence[str] | None


class RouteHandler(HTTPRouteHandler):
    async def authorize_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        for guard in self.resolve_guards():
            await guard(connection, self)  # type: ignore[misc]  # Litestar makes each one async


def get(path: Path = None, **options: Any) -> RouteHandler:
    return RouteHandler(path, http_method=HttpMethod.GET, **options)


def post(path: Path = None, **options: Any) -> RouteHandler:
    return RouteHandler(path, http_method=HttpMethod.POST, **options)


def put(path: Path = None, **options: Any) -> RouteHandler:
    return RouteHandler(path, http_method=HttpMethod.PUT, **options)


def patch(path: Path = None, **options: Any) -> RouteHandler:
    return RouteHandler(path, http_method=HttpMethod.PATCH, **options)


def delete(path: Path = None, **options: Any) -> RouteHandler:
    return RouteHandler(path, http_method=HttpMethod.DELETE, **options)
