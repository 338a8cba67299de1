"""`OPTIONS` names every method a path takes (RFC 9110, section 10.2.1).

Litestar answers `OPTIONS` with a handler made for the first route registered at a path, and
keeps that handler when later handlers join the path: `OPTIONS /v1/me/preferences` said
`Allow: GET, OPTIONS`, though `PATCH` is served there, and so for the complaints, the policy and
the API keys. The route the path now has knows all of them; its `Allow` replaces the stale one.
(A 405's `Allow` is the router's, and right.)
"""

from __future__ import annotations

from litestar.routes import HTTPRoute
from litestar.types import Message, Scope

__all__ = ["allow_every_method"]


async def allow_every_method(message: Message, scope: Scope) -> None:
    """A `before_send` hook, so that it also sees the answers Litestar gives itself."""
    if (
        message["type"] != "http.response.start"
        or scope.get("method") != "OPTIONS"
        or message["status"] != 204
        or not (template := scope.get("path_template"))
    ):
        return
    route = next(
        (r for r in scope["litestar_app"].routes if isinstance(r, HTTPRoute) and r.path_format == template),
        None,
    )
    if route is None:
        return
    allow = ", ".join(sorted(route.methods)).encode()
    headers = [(name, value) for name, value in message.get("headers", ()) if name.lower() != b"allow"]
    message["headers"] = [*headers, (b"allow", allow)]
