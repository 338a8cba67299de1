"""Query strings read as strictly as bodies: under `/v1/`, a parameter the route does not take, or
one it takes once given twice, is refused 400 naming it.

Litestar ignores a parameter no handler argument names, and keeps the last of a repeated one. A
body with an unknown field or a duplicate key is refused (`gateway.body`), but a query was not:
`GET /v1/audit/decisions?user_id=…` (a filter that route lacks) answered every subject's
decisions to an auditor who believed they had filtered. The refused call is still in the audit
access log, as every refused audit call is, with no results. Pages and operations routes stay
lenient: a page reads `?lang=` in the browser, and monitors add their own parameters to health
checks.
"""

from __future__ import annotations

import re
import weakref
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request
from litestar.handlers import HTTPRouteHandler

from gateway.errors import InvalidInput

__all__ = ["refuse_stray_query_parameters"]

_API = "/v1/"
# A name is repeated in the refusal only if it has a parameter's shape: it is the client's text,
# and a query string may hold a user id or an address where a name goes (`?alice@example.com`).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
# handler → (its path parameters → the query parameters it takes). Weak, so that an app and its
# runtime are not kept alive by this table once nothing else holds them (the tests make many).
_TAKEN: weakref.WeakKeyDictionary[HTTPRouteHandler, dict[frozenset[str], dict[str, bool] | None]] = (
    weakref.WeakKeyDictionary()
)


async def refuse_stray_query_parameters(request: Request[Any, Any, Any]) -> None:
    """`before_request`: runs after the guards, before the handler's arguments are parsed."""
    query = request.scope["query_string"]
    if not query or not request.scope["path"].startswith(_API) or request.scope["method"] == "OPTIONS":
        return  # OPTIONS: Litestar's own answer, which reads nothing (a preflight has the query)
    taken = _taken(request.route_handler, frozenset(request.path_params))
    if taken is None:  # it takes the whole query (Litestar's reserved `query` argument)
        return
    seen: set[str] = set()
    for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        repeats = taken.get(name)
        if repeats is None:
            if _NAME.fullmatch(name):
                raise InvalidInput(f"{name}: this route takes no such query parameter", name)
            raise InvalidInput("query: a parameter this route does not take", "query")
        if name in seen and not repeats:
            raise InvalidInput(f"{name}: given more than once", name)
        seen.add(name)


def _taken(handler: HTTPRouteHandler, path_parameters: frozenset[str]) -> dict[str, bool] | None:
    """The query parameters `handler` takes, by the name clients use, each with whether it may
    repeat (a list); None if it takes the whole query. From Litestar's own reading of the
    handler's signature, so an alias (`from` for `start`) and a dependency's parameters count as
    the handler's. Worked out once per handler."""
    known = _TAKEN.setdefault(handler, {})
    if path_parameters not in known:
        model = handler.create_kwargs_model(path_parameters=dict.fromkeys(path_parameters))  # type: ignore[arg-type]
        known[path_parameters] = (
            None
            if "query" in model.expected_reserved_kwargs
            else {p.field_alias: p.is_sequence for p in model.expected_query_params}
        )
    return known[path_parameters]
