"""Where the gateway is and who is calling: the one place the base URL and API key are kept."""

from __future__ import annotations

import re

import httpx

from clients.sdk.calls import Call

__all__ = ["Endpoint"]

KEY_PREFIX = "cgw_"
_KEY = re.compile(r"cgw_[A-Za-z0-9_-]+")  # what the gateway issues: its prefix, a key id, a secret


class Endpoint:
    """The key is sent on every request rather than set on the httpx client, so an injected
    client is never changed, and it is kept out of `repr` so clients can be logged."""

    def __init__(self, base_url: str, api_key: str) -> None:
        # Never repeated in the error. A key read from a file may keep its line break, which httpx
        # then refused with the whole header, key included, in the message the SDK raised.
        if not api_key.startswith(KEY_PREFIX):
            raise ValueError(f"api_key: a service API key starts with {KEY_PREFIX!r}")
        if not _KEY.fullmatch(api_key):
            raise ValueError(
                "api_key: a service API key holds only letters, digits, '_' and '-' "
                "(a line break or a space read with it must be stripped)"
            )
        self.base_url = _checked_base_url(base_url)
        self._authorization = f"Bearer {api_key}"

    def __repr__(self) -> str:
        return f"Endpoint({self.base_url!r}, api_key='{KEY_PREFIX}…')"

    def url(self, call: Call[object]) -> str:
        """Joined by hand, not by URL resolution, so a gateway served under a path prefix keeps it."""
        return self.base_url + call.path

    def headers(self, call: Call[object]) -> dict[str, str]:
        headers = {"Authorization": self._authorization, "Accept": "application/json"}
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        return headers


def _checked_base_url(base_url: str) -> str:
    """An http(s) URL of the gateway, and nothing more: never repeated in the error. A user and
    password in it (`http://svc:secret@host`) made httpx send Basic auth instead of the key, every
    call refused, and the password was in this client's repr and httpx's log lines; a line break
    read with it failed only at the first call, as no `GatewayError`."""
    problem = None
    if base_url != base_url.strip() or any(ch.isspace() for ch in base_url):
        problem = "holds white space or a line break (strip what was read with it)"
    else:
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            problem = "not an http or https URL with a host"
        elif url.userinfo:
            problem = "holds a user or password; the API key is the only credential"
        elif "?" in base_url or "#" in base_url:  # even empty: calls would go under "/?" or to "/"
            problem = "holds a query or fragment"
    if problem is not None:
        raise ValueError(f"base_url: {problem}")
    return base_url.rstrip("/")
