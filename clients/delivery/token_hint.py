"""What anyone may see of a device token, a user in their device list or an operator reading the
file sink's lines: enough to tell devices apart, never enough to push to one."""

from __future__ import annotations

from urllib.parse import urlsplit

import msgspec

__all__ = ["token_hint"]

HINT_HOST_CHARS = 16
HINT_HIDDEN_CHARS = 16


class _Endpoint(msgspec.Struct):
    endpoint: str


def token_hint(platform: str, token: str) -> str:
    """The token's last four characters; for Web Push, whose token is a subscription, see
    `_webpush_hint`."""
    if platform == "webpush":
        return _webpush_hint(token)
    return "…" + token[-4:]


def _webpush_hint(token: str) -> str:
    """The push service's host (as many of its last labels as fit in 16 characters), and the
    endpoint's last four characters when at least 16 more after the host stay hidden. Never the
    endpoint: it is a capability URL, as secret as any device token."""
    try:
        endpoint = msgspec.json.decode(token, type=_Endpoint).endpoint
        parts = urlsplit(endpoint)
        host = parts.hostname
    except (msgspec.DecodeError, RecursionError, ValueError):
        return "webpush subscription"
    if not host or not parts.scheme:
        return "webpush subscription"
    labels = host.split(".")
    shown = labels.pop()
    while labels and len(labels[-1]) + 1 + len(shown) <= HINT_HOST_CHARS:
        shown = labels.pop() + "." + shown
    if len(shown) > HINT_HOST_CHARS:
        shown = "…" + shown[-(HINT_HOST_CHARS - 1) :]
    after_host = endpoint[len(f"{parts.scheme}://{parts.netloc}") :]
    return f"{shown} …{after_host[-4:]}" if len(after_host) >= HINT_HIDDEN_CHARS + 4 else shown
