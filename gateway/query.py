"""Query strings read as strictly as bodies: under `/v1/`, a parameter the route does not take, or
one it takes once given twice, is refused 400 naming it.

Litestar ignores a parameter no handler argument names, and keeps the last of a repeated one. A
body with an unknown field or a duplicate key is refused (`gateway.body`), but a query was not:
`GET /v1/audit/decisions?user_id=…` (a filter that route lacks) answered every subject's
decisions to an auditor who believed they had filtered, and the access log recorded a lookup of
that user. Pages and operations routes stay lenient: a page reads `?lang=` in the browser, and
monitors add their own parameters to health checks.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request
from litestar.handlers import HTTPRouteHandler

from gateway.errors import InvalidInput

__all__ = ["refuse_stray_query_parameters"]

_API = "/v1/"
_NAME_SHOWN = 64  # of a parameter's name in the refusal: it is the client's text


async def refuse_stray_query_parameters(request: Request[Any, Any, Any]) -> None:
    """`before_request`: runs after the guards, before the handler's arguments are parsed."""
    query = request.scope["query_string"]
    if not query or not request.scope["path"].startswith(_API) or request.scope["method"] == "OPTIONS":
        return  # OPTIONS: Litestar's own answer, which reads nothing (a preflight has the query)
    taken = _taken(request.route_handler, frozenset(request.path_params))
    seen: set[str] = set()
    for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        repeats = taken.get(name)
        if repeats is None:
            shown = name[:_NAME_SHOWN]
            raise InvalidInput(f"{shown}: this route takes no such query parameter", shown)
        if name in seen and not repeats:
            raise InvalidInput(f"{name}: given more than once", name)
        seen.add(name)


@cache
def _taken(handler: HTTPRouteHandler, path_parameters: frozenset[str]) -> dict[str, bool]:
    """The query parameters `handler` takes, by the name clients use, each with whether it may
    repeat (a list). From Litestar's own reading of the handler's signature, so an alias
    (`from` for `start`) and a dependency's parameters count as the handler's."""
    model = handler.create_kwargs_model(path_parameters=dict.fromkeys(path_parameters))  # type: ignore[arg-type]
    return {p.field_alias: p.is_sequence for p in model.expected_query_params}
