"""The two pages of the spec: the preference center for people (`/preferences`, zh-CN and en)
and the auditor dashboard (`/audit/`).

Each is an HTML shell (`gateway/templates/`, filled in here and never served as it is) plus
scripts under `/pages/` (`gateway/pages/`) that call the API with the visitor's own credential
(a user token, an auditor's API key), so the pages themselves carry no data and need none: they
are public, like `/schema`. There is no build step; the scripts are plain JavaScript a reviewer
can read as served.
"""

from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path
from typing import get_type_hints

from litestar import Response
from litestar.enums import MediaType
from litestar.handlers import HTTPRouteHandler
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from gateway.annotations import choices
from gateway.routes.audit import AuditController
from gateway.routes.handlers import get
from gateway.static_files import STATIC_FILES
from policies.catalog import TOPIC_PURPOSES

__all__ = ["NOTICE_VERSION", "PAGES_ROUTES"]

PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"
TEMPLATES_DIR = PAGES_DIR.parent / "templates"
PUBLIC = {"public": True}
NOTICE_VERSION = "preference-center-2026-12"
"""The notice a consent given on the preference center is recorded under: the purpose texts the
page shows (`gateway/pages/i18n.js`). Change it whenever those texts change meaning."""


@cache
def _page(name: str) -> bytes:
    """The shell with what the scripts need from the server's own tables: the notice version,
    which consents each topic needs (so the page can say why a topic cannot be turned on yet),
    and the values the audit listings' filters take."""
    needs = {topic: sorted(purposes) for topic, purposes in TOPIC_PURPOSES.items()}
    text = (TEMPLATES_DIR / name).read_text(encoding="utf-8")
    text = text.replace("{{NOTICE_VERSION}}", NOTICE_VERSION)
    text = text.replace("{{TOPIC_NEEDS}}", _attribute(needs))
    text = text.replace("{{FILTER_CHOICES}}", _attribute(_filter_choices()))
    return text.encode()


def _attribute(value: object) -> str:
    return html.escape(json.dumps(value, separators=(",", ":")), quote=True)


def _filter_choices() -> dict[str, dict[str, list[str]]]:
    """Each audit listing's enumerated filters and their values, by the listing's path, read off
    its route's parameters: the dashboard offers them to choose from, where an auditor typed a
    purpose, an outcome or a reason code by heart and was refused for a misspelling."""
    found: dict[str, dict[str, list[str]]] = {}
    for handler in vars(AuditController).values():
        if isinstance(handler, HTTPRouteHandler):
            hints = get_type_hints(handler.fn, include_extras=True)
            enumerated = {name: list(values) for name, kind in hints.items() if (values := choices(kind))}
            if enumerated:
                found |= {AuditController.path + path: enumerated for path in handler.paths}
    return found


@get("/preferences", opt=PUBLIC, include_in_schema=False, media_type=MediaType.HTML)
async def preferences_page() -> Response[bytes]:
    return Response(_page("preferences.html"), media_type=MediaType.HTML)


@get(["/audit", "/audit/"], opt=PUBLIC, include_in_schema=False, media_type=MediaType.HTML)
async def audit_page() -> Response[bytes]:
    return Response(_page("audit.html"), media_type=MediaType.HTML)


PAGES_ROUTES: list[ControllerRouterHandler] = [
    preferences_page,
    audit_page,
    create_static_files_router(
        path="/pages", directories=[PAGES_DIR], file_system=STATIC_FILES, opt=PUBLIC, name="pages"
    ),
]
