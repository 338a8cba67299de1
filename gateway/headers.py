"""Security headers on every answer, in one place.

The API answers carry personal data (an export is a user's whole decrypted record), so no cache
may keep them and no browser may sniff them into something executable or frame them. The pages
get a policy that lets them run their own scripts and call the API on this origin, nothing else:
push titles, complaint comments and campaign names are shown in them, and a policy without inline
scripts is what keeps one of those from ever running as code.

`/schema` is Litestar's Swagger UI page, with Swagger UI's scripts and style served from this
origin (`/schema/assets/`, from the pinned `swagger-ui-bundle-v2` package), never from a CDN: a
developer's browser runs only code we ship, and tells no third party who is reading our API. The
page starts Swagger UI with an inline script holding the whole OpenAPI document, so `SwaggerPage`
hashes that script and the page's one inline style as it renders them, and the policy admits
exactly those bytes, no `'unsafe-inline'`: a description in the document that closed the script
and opened another would change what the browser hashes, and none of it would run. Swagger UI 5
styles its elements through the DOM (`element.style`), which a policy does not govern, so it
needs nothing more; `data:` images are its icons, and `connect-src 'self'` is "Try it out".
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from litestar import Request
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.types import Message, Scope

__all__ = ["PAGE_POLICY", "SwaggerPage", "security_headers"]

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_SCHEMA_POLICY = (
    "default-src 'none'; script-src 'self'{scripts}; style-src 'self'{styles}; connect-src 'self'; "
    "img-src 'self' data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_EVERYWHERE = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
_API = [
    *_EVERYWHERE,
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
# The opener policy too: a site that opened a page (a link in a mail, say) keeps no handle on its
# window, to send it elsewhere later, as to a sign-in link of someone else's (SECURITY.md, "The pages").
_PAGES = [
    *_EVERYWHERE,
    (b"cache-control", b"no-cache"),
    (b"content-security-policy", PAGE_POLICY.encode()),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_SCHEMA = [*_EVERYWHERE, (b"cache-control", b"no-cache")]
_INLINE_POLICY = "cgw.inline_policy"
"""Where `SwaggerPage` leaves its page's policy for `security_headers`, in the request's scope state."""


def _hashes(page: str, tag: str) -> str:
    """` 'sha256-…'` for each inline `tag` element of `page`, over its text as a browser hashes it
    (the raw text up to the closing tag, line ends normalised to LF as the HTML parser does)."""
    sources = []
    elements = re.findall(rf"<{tag}\b([^>]*)>(.*?)</{tag}[\s/>]", page, re.IGNORECASE | re.DOTALL)
    for attributes, text in elements:
        if re.search(r"\bsrc\s*=", attributes, re.IGNORECASE):
            continue
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        sources.append(f" 'sha256-{digest}'")
    return "".join(sources)


def _schema_policy(page: str = "") -> str:
    """The policy of a `/schema` answer: this origin's files, and only the inline code of `page`."""
    return _SCHEMA_POLICY.format(scripts=_hashes(page, "script"), styles=_hashes(page, "style"))


class SwaggerPage(SwaggerRenderPlugin):
    """Litestar's Swagger UI page, unchanged, which hands `security_headers` a policy admitting
    its own inline script and style. Hashed at each render, so the policy always matches the
    document the page embeds, however the routes change."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        page = super().render(request, openapi_schema)
        request.scope.setdefault("state", {})[_INLINE_POLICY] = _schema_policy(page.decode())
        return page


def _headers_for(scope: Scope) -> list[tuple[bytes, bytes]]:
    path = scope["path"]
    if path.startswith("/schema"):
        policy = scope.get("state", {}).get(_INLINE_POLICY) or _schema_policy()
        return [*_SCHEMA, (b"content-security-policy", policy.encode())]
    if path == "/preferences" or path.startswith(("/audit/", "/pages/")) or path == "/audit":
        return _PAGES
    return _API


async def security_headers(message: Message, scope: Scope) -> None:
    """A `before_send` hook rather than a middleware: Litestar sends the answers to exceptions
    raised in middleware (a 401 from authentication) from outside every middleware, but through
    its hooks."""
    if message["type"] == "http.response.start":
        message["headers"] = [*message.get("headers", ()), *_headers_for(scope)]
