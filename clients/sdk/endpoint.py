"""Where the gateway is and who is calling: the one place the base URL and API key are kept."""

from __future__ import annotations

from clients.sdk.calls import Call

__all__ = ["Endpoint"]

KEY_PREFIX = "cgw_"


class Endpoint:
    """The key is sent on every request rather than set on the httpx client, so an injected
    client is never changed, and it is kept out of `repr` so clients can be logged."""

    def __init__(self, base_url: str, api_key: str) -> None:
        if not api_key.startswith(KEY_PREFIX):
            raise ValueError(f"api_key: a service API key starts with {KEY_PREFIX!r}")
        self.base_url = base_url.rstrip("/")
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
