"""Admin: API keys, policy settings and key rotation. Scope `admin` only."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post, put
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from gateway.auth import Principal
from gateway.body import Strict
from gateway.deps import RuntimeDep
from gateway.guards import requires_scope
from gateway.schemas.admin import ApiKeyCreate, ApiKeyCreated, PolicyRead, RotationRead
from policies.settings import PolicySettings

__all__ = ["AdminController"]


class AdminController(Controller):
    path = "/v1/admin"
    guards = [requires_scope("admin")]  # noqa: RUF012
    tags = ["admin"]  # noqa: RUF012

    @post("/keys", operation_id="createApiKey", dto=Strict[ApiKeyCreate], return_dto=None, status_code=201)
    async def create_key(self, runtime: RuntimeDep, data: JSONBody[ApiKeyCreate]) -> ApiKeyCreated:
        key, secret = await runtime.api_keys.create(data.name, tuple(dict.fromkeys(data.scopes)))
        return ApiKeyCreated(key.key_id, key.name, list(key.scopes), secret, key.created_at)

    @delete("/keys/{key_id:str}", operation_id="revokeApiKey", status_code=HTTP_204_NO_CONTENT)
    async def revoke_key(self, runtime: RuntimeDep, key_id: FromPath[str]) -> None:
        await runtime.api_keys.revoke(key_id)

    @get("/policy", operation_id="getPolicy")
    async def get_policy(self, runtime: RuntimeDep) -> PolicyRead:
        v = runtime.policy.version
        return PolicyRead(v.version, v.settings, v.changed_by, v.changed_at)

    @put("/policy", operation_id="putPolicy", dto=Strict[PolicySettings], return_dto=None)
    async def put_policy(
        self, request: Request[Principal, Any, Any], runtime: RuntimeDep, data: JSONBody[PolicySettings]
    ) -> PolicyRead:
        v = await runtime.policy.change(data, request.user.actor)
        return PolicyRead(v.version, v.settings, v.changed_by, v.changed_at)

    @post("/keys/rotate-encryption", operation_id="rotateEncryptionKey", status_code=200)
    async def rotate(self, runtime: RuntimeDep) -> RotationRead:
        kid, rewrapped = await runtime.rotate_encryption_key()
        return RotationRead(kid, rewrapped)
