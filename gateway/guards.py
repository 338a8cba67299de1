"""Guards: one per role or scope, composed on controllers. Authentication already happened.

They are `async` only so Litestar calls them on the event loop: a plain function would be
sent to a worker thread on every request, which cost 17% of a push's time in the profile.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection, Request
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from gateway.auth import Principal
from gateway.errors import Forbidden

__all__ = ["refuses_scope", "requires_scope", "requires_user"]


def _lists_methods(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """An OPTIONS request, which Litestar answers itself with the route's methods (we define no
    OPTIONS handler): nothing of anyone's, and not authenticated, like the OpenAPI document."""
    return isinstance(connection, Request) and connection.method == "OPTIONS"


def _principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    user = connection.scope.get("user")
    if not isinstance(user, Principal):
        raise Forbidden("not authenticated for this route")
    return user


async def requires_user(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Preference-center routes act for the person in the user token, and only for them."""
    if not _lists_methods(connection) and _principal(connection).kind != "user":
        raise Forbidden("this route needs a user token")


def requires_scope(*scopes: str) -> Guard:
    """An API key holding any one of `scopes`."""
    wanted = frozenset(scopes)
    names = " or ".join(f"`{s}`" for s in scopes)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if _lists_methods(connection):
            return
        principal = _principal(connection)
        if principal.kind != "key" or not wanted & principal.scopes:
            raise Forbidden(f"this route needs an API key with scope {names}")

    guard.__name__ = "requires_scope_" + "_or_".join(s.replace(":", "_") for s in scopes)
    return guard


def refuses_scope(scope: str) -> Guard:
    """No API key holding `scope`, whatever else it holds: audit routes refuse admin keys even
    where one was made with `audit:read` too, before such keys were refused at creation."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if not _lists_methods(connection) and scope in _principal(connection).scopes:
            raise Forbidden(f"this route is not for API keys with scope `{scope}`")

    guard.__name__ = "refuses_scope_" + scope.replace(":", "_")
    return guard
