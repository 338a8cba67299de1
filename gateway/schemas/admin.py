"""Wire models of the admin face."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from policies.settings import PolicySettings

__all__ = ["ApiKeyCreate", "ApiKeyCreated", "KeyName", "PolicyRead", "RotationRead"]

Scope = Literal[
    "pushes:write", "campaigns:write", "campaigns:read", "complaints:write", "audit:read", "admin"
]


KeyName = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^ *[\w.:-][\w .:-]*$(?!\n)")]
"""An API key's name, one short printable line as key lists and logs show it, not spaces alone. The
one rule for the API (decoded here) and `keys create` (`gateway.services.api_keys.check_name`).
`(?!\n)`: Python's `$` also matches before a final newline, and "name\n" got through."""


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: KeyName
    scopes: Annotated[
        list[Scope],
        Meta(
            min_length=1,
            max_length=6,
            description="The key's scopes. `audit:read` is refused here (400): an auditor's key is "
            "made by `consent-gateway keys create` on the server, never by an admin key.",
        ),
    ]


class ApiKeyCreated(msgspec.Struct):
    key_id: str
    name: str
    scopes: list[str]
    api_key: str
    created_at: str


class ApiKeyRead(msgspec.Struct):
    """A key as operators see it: never its secret, which only its creation shows."""

    key_id: str
    name: str
    scopes: list[str]
    created_at: str
    revoked_at: str | None


class PolicyRead(msgspec.Struct):
    version: int
    settings: PolicySettings
    changed_by: str
    changed_at: str | None


class RotationRead(msgspec.Struct):
    active_kek_id: str
    rewrapped: int
