"""Operations: health, readiness, metrics and the public signing keys. No credentials needed."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE

from gateway.deps import MetricsDep, RuntimeDep
from gateway.routes.handlers import get
from gateway.routes.refusals import MEANING
from gateway.schemas.errors import ErrorRead

__all__ = ["OPS_ROUTES"]

PUBLIC = {"public": True}
ANONYMOUS: list[dict[str, list[str]]] = [{}]
"""OpenAPI's "no credentials needed" (an empty requirement), so the document does not show these
routes under the global bearer requirement; an empty list would inherit it."""
UNAVAILABLE = {503: ResponseSpec(ErrorRead, description=MEANING[503], generate_examples=False)}
"""No credential, so no 401 or 403; but an answer resting on storage waits until what it read is
on disk (`gateway.durability`), and is a 503 when storage has failed."""


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = {}


def _unwell(description: str) -> dict[int, ResponseSpec]:
    return {503: ResponseSpec(Health, description=description, generate_examples=False)}


@get(
    "/healthz",
    summary="Liveness: the process answers",
    opt=PUBLIC, security=ANONYMOUS, operation_id="health", tags=["operations"],
    responses=_unwell("Storage has failed for good (`checks.storage`: `failed`): restart the process."),
)  # fmt: skip
async def healthz(runtime: RuntimeDep) -> Response[Health]:
    """Alive unless storage has failed for good. After a failed fsync this process refuses every
    write and every read until it restarts, so liveness says so: an orchestrator that only
    checked readiness would keep a process that can never be ready again."""
    if runtime.store.failure() is not None:
        return Response(Health("failed", {"storage": "failed"}), status_code=HTTP_503_SERVICE_UNAVAILABLE)
    return Response(Health("ok"))


@get(
    "/readyz",
    summary="Readiness: keys load, both databases take a write",
    opt=PUBLIC, security=ANONYMOUS, operation_id="ready", tags=["operations"],
    responses=_unwell("Not ready: a write would not be kept; `checks` names what failed."),
)  # fmt: skip
async def readyz(runtime: RuntimeDep) -> Response[Health]:
    """Ready when a write would be kept, not merely taken: both databases take a write
    transaction, have room and may be written (after a full disk or files that refused a write,
    "full" or "read-only", a probe commit must be kept) and are still the
    files on disk, and the key store on disk still holds the keys in use. A process whose data
    dir was removed goes on writing into the deleted files it holds open, and a restart loses
    all of it. `checks` names what failed: "database" lists each file with why."""
    store = runtime.store
    keys = store.keystore_unready() if runtime.keys.keyring.key_ids else "missing"
    databases = await store.unready()
    checks = {"keys": keys or "ok", "database": ", ".join(databases) or "ok"}
    ready = all(v == "ok" for v in checks.values())
    return Response(
        Health("ready" if ready else "not ready", checks),
        status_code=200 if ready else HTTP_503_SERVICE_UNAVAILABLE,
    )


@get(
    "/metrics",
    summary="Prometheus metrics (counts only, no identities)",
    opt=PUBLIC,
    security=ANONYMOUS,
    operation_id="metrics",
    tags=["operations"],
    media_type="text/plain; version=0.0.4",
    responses=UNAVAILABLE,
)
async def metrics(metrics: MetricsDep) -> bytes:
    return metrics.render()


@get(
    "/.well-known/jwks.json",
    summary="The public keys that verify receipts, checkpoints and exports",
    opt=PUBLIC, security=ANONYMOUS, operation_id="jwks", tags=["operations"],
    responses=UNAVAILABLE,
)  # fmt: skip
async def jwks(runtime: RuntimeDep) -> dict[str, Any]:
    return runtime.signer.jwks()


OPS_ROUTES = [healthz, readyz, metrics, jwks]
