"""`Allow` names every method a path takes (RFC 9110, section 10.2.1), `HEAD` with `GET`.

Litestar answers `OPTIONS` with a handler made for the first route registered at a path, and
keeps that handler when later handlers join the path: `OPTIONS /v1/me/preferences` said
`Allow: GET, OPTIONS`, though `PATCH` is served there, and so for the complaints, the policy and
the API keys. The route the path now has knows all of them; its `Allow` replaces the stale one.
A 405's `Allow` is the router's and names the path's methods, but not `HEAD`, which
`gateway.head` serves wherever `GET` is.
"""

from __future__ import annotations

from litestar.routes import HTTPRoute
from litestar.types import Message, Scope

from gateway.head import allow_header

__all__ = ["allow_every_method"]


async def allow_every_method(message: Message, scope: Scope) -> None:
    """A `before_send` hook, so that it also sees the answers Litestar gives itself."""
    if message["type"] != "http.response.start" or message["status"] not in (204, 405):
        return
    headers = message.get("headers", ())
    if message["status"] == 405:
        stated = next((value for name, value in headers if name.lower() == b"allow"), None)
        methods = set(stated.decode("latin-1").split(", ")) if stated else None
    else:
        methods = _route_methods(scope)
    if methods is None:
        return
    kept = [(name, value) for name, value in headers if name.lower() != b"allow"]
    message["headers"] = [*kept, (b"allow", allow_header(methods))]


def _route_methods(scope: Scope) -> set[str] | None:
    """The methods of the route an `OPTIONS` request asked about, if it found one."""
    if scope.get("method") != "OPTIONS" or not (template := scope.get("path_template")):
        return None
    route = next(
        (r for r in scope["litestar_app"].routes if isinstance(r, HTTPRoute) and r.path_format == template),
        None,
    )
    return set(route.methods) if route else None
