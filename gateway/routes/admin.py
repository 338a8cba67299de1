"""Admin: API keys, policy settings and key rotation. Scope `admin` only."""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Controller, Request, Response
from litestar.datastructures import ResponseHeader
from litestar.params import FromPath, HeaderParameter, JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from gateway.auth import Principal
from gateway.body import Strict
from gateway.clock import rfc3339_text, rfc3339_text_or_none
from gateway.deps import RuntimeDep
from gateway.errors import InvalidInput
from gateway.routes.access import ADMIN
from gateway.routes.handlers import delete, get, post, put
from gateway.routes.refusals import refusals
from gateway.schemas.admin import ApiKeyCreate, ApiKeyCreated, ApiKeyRead, PolicyRead, RotationRead
from gateway.services.policy import policy_etag
from policies.settings import PolicySettings
from storage.repositories.policy import PolicyVersion

__all__ = ["AdminController"]

ETAG = ResponseHeader(
    name="ETag", documentation_only=True, description="The policy version, for `If-Match` on `PUT`."
)
# RFC 9110: `If-Match: *` or a list of entity tags, each `"opaque"` or weak `W/"opaque"`.
# Empty list elements are allowed and ignored, as the RFC asks of recipients.
_ENTITY_TAG = re.compile(r'\s*(?:(W/)?("[\x21\x23-\x7e\x80-\xff]*"))?\s*(?:,|$)')


class AdminController(Controller):
    path = "/v1/admin"
    guards = [ADMIN.guard]  # noqa: RUF012
    tags = ["admin"]  # noqa: RUF012

    @post(
        "/keys",
        summary="Create an API key (its secret is shown once)",
        operation_id="createApiKey", dto=Strict[ApiKeyCreate], return_dto=None, status_code=201,
        responses=refusals(400, 413),
    )  # fmt: skip
    async def create_key(
        self, request: Request[Principal, Any, Any], runtime: RuntimeDep, data: JSONBody[ApiKeyCreate]
    ) -> ApiKeyCreated:
        """Any scopes but `audit:read` (400 naming `scopes`): auditors' keys are made by
        `consent-gateway keys create` on the server, never by an operator's admin key."""
        scopes = tuple(dict.fromkeys(data.scopes))
        key, secret = await runtime.api_keys.create(data.name, scopes, request.user.actor)
        return ApiKeyCreated(key.key_id, key.name, list(key.scopes), secret, rfc3339_text(key.created_at))

    @get(
        "/keys",
        summary="Every API key with its scopes, never a secret",
        operation_id="listApiKeys",
        responses=refusals(),
    )
    async def list_keys(self, runtime: RuntimeDep) -> list[ApiKeyRead]:
        """Every API key, oldest first, revoked ones too (`revoked_at`); never a secret."""
        return [
            ApiKeyRead(
                k.key_id,
                k.name,
                list(k.scopes),
                rfc3339_text(k.created_at),
                rfc3339_text_or_none(k.revoked_at),
            )
            for k in runtime.api_keys.list()
        ]

    @delete(
        "/keys/{key_id:str}",
        summary="Revoke an API key",
        operation_id="revokeApiKey", status_code=HTTP_204_NO_CONTENT,
        responses=refusals(400, why={
            404: "No live API key has this id.",
            409: "This is the last live key with scope `admin`: create another before revoking it.",
        }),
    )  # fmt: skip
    async def revoke_key(
        self, request: Request[Principal, Any, Any], runtime: RuntimeDep, key_id: FromPath[str]
    ) -> None:
        await runtime.api_keys.revoke(key_id, request.user.actor)

    @get(
        "/policy",
        summary="The policy in force and its version",
        operation_id="getPolicy",
        response_headers=[ETAG],
        responses=refusals(),
    )
    async def get_policy(self, runtime: RuntimeDep) -> Response[PolicyRead]:
        """Read afresh: another process may have changed the policy, and an ETag this process had
        cached would then be refused by every `If-Match` built from it."""
        runtime.policy.refresh(runtime.store.data.reader())
        return _policy_answer(runtime.policy.version)

    @put(
        "/policy",
        summary="Change the policy defaults (a new version)",
        operation_id="putPolicy",
        dto=Strict[PolicySettings],
        return_dto=None,
        response_headers=[ETAG],
        responses=refusals(400, 412, 413),
    )
    async def put_policy(
        self,
        request: Request[Principal, Any, Any],
        runtime: RuntimeDep,
        data: JSONBody[PolicySettings],
        if_match: Annotated[
            str | None,
            HeaderParameter(
                name="If-Match",
                description='The `ETag` of the policy read before changing it (`"7"`): the change is '
                "refused with 412 if another one came in between. Without it, the last write wins.",
            ),
        ] = None,
    ) -> Response[PolicyRead]:
        """Replaces the whole policy: a field left out takes its default, and so undoes an earlier
        change to it. To change one field, read the policy (`GET`), change that field in its
        `settings`, and send the `settings` back with the `ETag` in `If-Match`."""
        # Several If-Match lines are one list (RFC 9110); the parameter holds only the first.
        every = ", ".join(request.headers.getall("if-match", [])) if if_match is not None else None
        v = await runtime.policy.change(data, request.user.actor, _entity_tags(every))
        return _policy_answer(v)

    @post(
        "/keys/rotate-encryption",
        summary="Rotate the key-encryption key and re-wrap every data key",
        operation_id="rotateEncryptionKey", status_code=200,
        responses=refusals(why={
            409: "The key store cannot be written (a read-only mount, a full disk): nothing was rotated. "
                 "Or a data key does not open (a damaged page): the new key is active, the keys after it "
                 "are not yet re-wrapped, and each start tries again.",
        }),
    )  # fmt: skip
    async def rotate(self, request: Request[Principal, Any, Any], runtime: RuntimeDep) -> RotationRead:
        kid, rewrapped = await runtime.rotate_encryption_key(request.user.actor)
        return RotationRead(kid, rewrapped)


def _policy_answer(v: PolicyVersion) -> Response[PolicyRead]:
    changed_at = rfc3339_text_or_none(v.changed_at)  # None: the defaults
    return Response(
        PolicyRead(v.version, v.settings, v.changed_by, changed_at),
        headers={"ETag": policy_etag(v.version)},
    )


def _entity_tags(if_match: str | None) -> frozenset[str] | None:
    """The strong entity tags an `If-Match` names; None for no header or `*` (any policy). A weak
    tag (`W/"7"`, as some proxies rewrite them) never matches under the strong comparison RFC 9110
    asks of `If-Match`, so it is dropped, and a header of weak tags only is a 412, not a 400."""
    if if_match is None or if_match.strip() == "*":
        return None
    refused = InvalidInput(
        'If-Match must be * or entity tags, e.g. "7" (the ETag of a policy read)', "If-Match"
    )
    if not if_match.strip():
        raise refused
    tags: set[str] = set()
    position = 0
    while position < len(if_match):
        found = _ENTITY_TAG.match(if_match, position)
        if found is None or found.end() == position:
            raise refused
        if found.group(2) is not None and found.group(1) is None:
            tags.add(found.group(2))
        position = found.end()
    return frozenset(tags)
