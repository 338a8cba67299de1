"""Who may call each route, said once: the guard that enforces it and the OpenAPI document's
words for it are declared together here, so the two cannot drift apart.

Controllers and handlers take their guards from these declarations (`guards = [ADMIN.guard]`).
`AccessInTheDocument`, an app plugin, reads every route's guards as Litestar will run them (the
controller's and the handler's together) and gives its operation a security requirement naming
the credential and the scopes that admit it (any one requirement of the list will do), and a first
line in its description that says the same in words. A guarded route whose guards were not
declared here stops the app from being built: no route can go undescribed.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.exceptions import ImproperlyConfiguredException
from litestar.openapi.spec import Reference, SecurityRequirement, SecurityScheme
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from litestar.types import Guard

from gateway.guards import refuses_scope, requires_scope, requires_user

__all__ = [
    "ADMIN",
    "API_KEY",
    "AUDIT_READ",
    "CAMPAIGNS_READ",
    "CAMPAIGNS_WRITE",
    "CAMPAIGN_OPERATORS",
    "COMPLAINTS_WRITE",
    "DECLARED",
    "NOT_ADMIN",
    "PUSHES_WRITE",
    "PUSH_READERS",
    "SECURITY_SCHEMES",
    "USER",
    "USER_TOKEN",
    "Access",
    "AccessInTheDocument",
]

# The names of the two security schemes, as the document's requirements refer to them.
USER_TOKEN = "userToken"  # noqa: S105
API_KEY = "apiKey"
SECURITY_SCHEMES: dict[str, SecurityScheme | Reference] = {
    USER_TOKEN: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="A user token: a JWT from the wallet's identity service (`sub` the user_id, `aud` "
        "`consent-gateway`, `exp`). The preference center's routes act for that user, and only for them.",
    ),
    API_KEY: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="cgw_<key id>_<secret>",
        description="An API key, made by an admin (`POST /v1/admin/keys`, `consent-gateway keys create`) "
        "with one or more scopes: `pushes:write`, `campaigns:write`, `campaigns:read`, "
        "`complaints:write`, `audit:read`, `admin`; an auditor's `audit:read` key only by `keys create` "
        "on the server. An operation's security requirements name the scopes that admit it; any one "
        "of them will do.",
    ),
}


@dataclass(frozen=True)
class Access:
    """One guard and what it means to the document: the credential it `admits`, in words, and
    the security requirements that say so. A guard without requirements narrows what another
    guard of the same route admits (`NOT_ADMIN`)."""

    guard: Guard
    admits: str
    requirements: tuple[SecurityRequirement, ...] = ()


def _api_key(*scopes: str) -> Access:
    names = " or ".join(f"`{scope}`" for scope in scopes)
    return Access(
        requires_scope(*scopes),
        f"an API key with scope {names}",
        tuple({API_KEY: [scope]} for scope in scopes),
    )


USER = Access(requires_user, "a user token; the route acts for that user only", ({USER_TOKEN: []},))
PUSHES_WRITE = _api_key("pushes:write")
PUSH_READERS = _api_key("pushes:write", "campaigns:read")
CAMPAIGNS_WRITE = _api_key("campaigns:write")
CAMPAIGNS_READ = _api_key("campaigns:read")
CAMPAIGN_OPERATORS = _api_key("campaigns:write", "admin")
COMPLAINTS_WRITE = _api_key("complaints:write")
AUDIT_READ = _api_key("audit:read")
NOT_ADMIN = Access(refuses_scope("admin"), "never one that also holds `admin`")
ADMIN = _api_key("admin")
DECLARED = (
    USER, PUSHES_WRITE, PUSH_READERS, CAMPAIGNS_WRITE, CAMPAIGNS_READ, CAMPAIGN_OPERATORS,
    COMPLAINTS_WRITE, AUDIT_READ, NOT_ADMIN, ADMIN,
)  # fmt: skip


class AccessInTheDocument(ReceiveRoutePlugin):
    """Writes each guarded operation's security requirements and the first line of its
    description from the route's guards, as routes are registered (before the document is built)."""

    def __init__(self) -> None:
        self._by_guard = {access.guard: access for access in DECLARED}

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            guards = handler.resolve_guards()
            if not guards:
                continue  # public routes say so themselves (`security=[{}]`)
            found = [self._by_guard.get(guard) for guard in guards]
            accesses = [access for access in found if access is not None]
            granting = [access for access in accesses if access.requirements]
            if len(accesses) != len(found) or len(granting) != 1:
                raise ImproperlyConfiguredException(
                    f"{handler}: its guards must come from gateway.routes.access, exactly one of them "
                    "admitting a credential, so that the OpenAPI document can say who may call it"
                )
            grants = granting[0]
            narrows = [access for access in accesses if access is not grants]
            words = "Needs " + ", ".join(access.admits for access in [grants, *narrows])
            handler.security = list(grants.requirements)
            # Before any description the route gives (docstrings are not shown: they are notes for
            # whoever reads the code). Once only: a function handler is the same object in every app.
            told = handler.description or ""
            if not told.startswith(words):
                handler.description = f"{words}.\n\n{told}" if told else f"{words}."
