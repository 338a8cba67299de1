"""Security headers on every answer, in one place.

The API answers carry personal data (an export is a user's whole decrypted record), so no cache
may keep them and no browser may sniff them into something executable or frame them. The pages
get a policy that lets them run their own scripts and call the API on this origin, nothing else:
push titles, complaint comments and campaign names are shown in them, and a policy without inline
scripts is what keeps one of those from ever running as code. `/schema` keeps Litestar's own
documentation page as it is (it loads its scripts from a CDN).
"""

from __future__ import annotations

from litestar.types import Message, Scope

__all__ = ["PAGE_POLICY", "security_headers"]

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_EVERYWHERE = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
_API = [
    *_EVERYWHERE,
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
_PAGES = [*_EVERYWHERE, (b"cache-control", b"no-cache"), (b"content-security-policy", PAGE_POLICY.encode())]


def _headers_for(path: str) -> list[tuple[bytes, bytes]]:
    if path.startswith("/schema"):
        return _EVERYWHERE
    if path == "/preferences" or path.startswith(("/audit/", "/pages/")) or path == "/audit":
        return _PAGES
    return _API


async def security_headers(message: Message, scope: Scope) -> None:
    """A `before_send` hook rather than a middleware: Litestar sends the answers to exceptions
    raised in middleware (a 401 from authentication) from outside every middleware, but through
    its hooks."""
    if message["type"] == "http.response.start":
        message["headers"] = [*message.get("headers", ()), *_headers_for(scope["path"])]
