"""The scopes an API key may hold: a service's, an auditor's, an admin's. Kept apart from the
authentication middleware so that the CLI offers them (`keys create --scope`) without loading
the web framework."""

from __future__ import annotations

__all__ = ["SCOPES"]

SCOPES = ("pushes:write", "campaigns:write", "campaigns:read", "complaints:write", "audit:read", "admin")
