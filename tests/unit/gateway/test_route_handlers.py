"""Our route decorators hand guards the route handler itself, not Litestar's per-request copy
(gateway/routes/handlers.py), and every route of the app is declared with them."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.errors import Forbidden, handle_gateway_error
from gateway.routes.handlers import RouteHandler, post
from gateway.settings import Settings


def test_a_guard_is_handed_the_handler_and_still_refuses() -> None:
    seen: list[BaseRouteHandler] = []

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        seen.append(handler)
        if connection.headers.get("x-let-in") != "yes":
            raise Forbidden("not let in")

    @post("/", guards=[guard], status_code=200)
    async def handler() -> str:
        return "in"

    app = Litestar(route_handlers=[handler], exception_handlers={Forbidden: handle_gateway_error})
    with TestClient(app) as client:
        assert client.post("/").status_code == 403
        answered = client.post("/", headers={"x-let-in": "yes"})
    assert (answered.status_code, answered.text) == (200, "in")
    (route,) = [r for r in app.routes if isinstance(r, HTTPRoute) and r.path == "/"]
    (registered,) = [h for h in route.route_handlers if "POST" in h.http_methods]
    assert seen == [registered, registered]
    assert all(s is registered for s in seen)


def test_every_route_handler_of_ours_is_declared_with_them() -> None:
    """Not the ones Litestar makes: the OpenAPI document's, the static files', each path's OPTIONS."""
    app = create_app(Settings())
    ours = [
        handler
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        if handler.fn.__module__.startswith("gateway.")
    ]
    assert len(ours) > 40
    assert [h for h in ours if not isinstance(h, RouteHandler)] == []
