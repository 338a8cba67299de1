"""The Litestar application, assembled from a few lists.

`create_app()` touches no disk: keys, databases and workers are opened in the lifespan, so
importing the app (for the OpenAPI document, or the spec-coverage tool) reads and writes nothing.
Called with no settings (a runner's factory call), it sets up the process's logging.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext, suppress
from importlib.metadata import version
from typing import Any

from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler
from swagger_ui_bundle import swagger_ui_path

from gateway.audit_access_log import log_unrouted_audit_calls
from gateway.auth import auth_middleware
from gateway.body import ClosedStructs, refuse_unread_body
from gateway.body_timeout import read_bodies_in_time
from gateway.checkpoints import sign_checkpoints
from gateway.clock import Clock, system_clock
from gateway.durability import durable_answers
from gateway.errors import (
    GatewayError,
    handle_framework_validation,
    handle_gateway_error,
    handle_storage_failure,
    handle_unexpected,
)
from gateway.gc_tuning import server_collector
from gateway.head import answer_head_as_get
from gateway.headers import SwaggerPage, security_headers
from gateway.logs import Streaks, configure_logging, quiet_server_access_log
from gateway.metrics import Metrics
from gateway.options import allow_every_method
from gateway.query import refuse_stray_query_parameters
from gateway.request_log import request_log
from gateway.routes.access import API_KEY, SECURITY_SCHEMES, USER_TOKEN, AccessInTheDocument
from gateway.routes.admin import AdminController
from gateway.routes.audit import AuditController
from gateway.routes.campaigns import CampaignController
from gateway.routes.complaints import ComplaintController
from gateway.routes.me import MeController
from gateway.routes.ops import OPS_ROUTES
from gateway.routes.pages import PAGES_ROUTES
from gateway.routes.pushes import PushController
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.static_files import STATIC_FILES
from gateway.worker import Worker
from storage.failures import StorageFailedError

__all__ = ["create_app"]

SWAGGER_ASSETS = "/schema/assets"
"""Swagger UI's files, from the pinned `swagger-ui-bundle-v2` package: `/schema` loads nothing from a CDN."""
ROUTES: list[ControllerRouterHandler] = [
    *OPS_ROUTES, MeController, PushController, CampaignController, ComplaintController, AdminController,
    AuditController, *PAGES_ROUTES,
    create_static_files_router(
        path=SWAGGER_ASSETS, directories=[swagger_ui_path], file_system=STATIC_FILES, name="swagger-ui"
    ),
]  # fmt: skip
VERSION = version("consent-gateway")  # the package's, from pyproject.toml
SIGNING_KEY_LOOK_SECONDS = 1.0
"""How often a server looks at the key store for a signing key deployed since (one `stat`)."""


async def read_strictly(request: Request[Any, Any, Any]) -> None:
    """`before_request`: what a request sends that its route would not read is refused, not
    ignored: a query parameter it does not take, a body where it takes none."""
    await refuse_stray_query_parameters(request)
    await refuse_unread_body(request)


def create_app(
    settings: Settings | None = None, clock: Clock = system_clock, *, tune_collector: bool | None = None
) -> Litestar:
    """`tune_collector`: the app is its process (`serve`, the benchmarks in process, and by
    default a runner's factory call, which gives no settings), so the collector is set for a
    server while it runs (gateway/gc_tuning.py). Not for an app inside another program, as the
    tests' clients are: freezing all the host holds froze its garbage too, never collected while
    an app ran; a test process piled up millions of objects, then collected them in one 10 s pause."""
    its_process = settings is None  # a runner's factory call
    if tune_collector is None:
        tune_collector = its_process
    settings = settings or Settings.from_env(os.environ)
    if its_process:
        # As `serve` sets it up: else our lines had no handler and went unheard, the request lines
        # with them, while the runner's own access line is kept quiet (quiet_server_access_log).
        configure_logging(settings.log_level)
    metrics = Metrics()
    logged_by_route, logged_unrouted = request_log(metrics)
    runtime: Runtime | None = None

    def current_runtime() -> Runtime:
        """The `runtime` dependency. It takes no argument: one taking `state` had Litestar build
        a `State` for every request (a copy of the app's and a lock), ~3% of a single push."""
        assert runtime is not None, "the lifespan makes the runtime before any request"
        return runtime

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        nonlocal runtime
        quiet_server_access_log()
        runtime = Runtime(settings, clock, metrics)
        app.state.runtime = runtime
        worker = Worker(runtime.dispatcher, settings.worker_concurrency) if settings.worker_enabled else None
        task = asyncio.create_task(worker.run()) if worker else None
        finishing = asyncio.create_task(runtime.finish_rotation())
        every = settings.checkpoint_seconds
        signing = asyncio.create_task(sign_checkpoints(runtime.audit.ledger, every)) if every else None
        following = asyncio.create_task(runtime.follow_signing_key(SIGNING_KEY_LOOK_SECONDS))
        try:
            with server_collector() if tune_collector else nullcontext():
                yield
        finally:
            for periodic in (signing, following):
                if periodic:
                    periodic.cancel()
                    with suppress(asyncio.CancelledError):
                        await periodic
            if worker and task:
                worker.stop()
                await task
            await finishing
            await runtime.aclose()

    app = Litestar(
        route_handlers=ROUTES,
        dependencies={
            "runtime": Provide(current_runtime, sync_to_thread=False),
            "metrics": Provide(lambda: metrics, sync_to_thread=False),
        },
        middleware=[logged_by_route, durable_answers, auth_middleware],
        before_request=read_strictly,
        before_send=[log_unrouted_audit_calls, logged_unrouted, security_headers, allow_every_method],
        exception_handlers={
            GatewayError: handle_gateway_error,
            ValidationException: handle_framework_validation,
            StorageFailedError: handle_storage_failure,
            Exception: handle_unexpected,
        },
        lifespan=[lifespan],
        state=State({"storage_refusals": Streaks()}),  # each app its own: `gateway.errors.storage_refusal`
        plugins=[AccessInTheDocument(), ClosedStructs()],
        request_max_body_size=settings.max_body_bytes,
        logging_config=None,  # gateway.logs configures JSON logging once per process
        openapi_config=OpenAPIConfig(
            title="Consent Gateway",
            version=VERSION,
            path="/schema",
            render_plugins=[
                SwaggerPage(
                    js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
                    css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
                    standalone_preset_js_url=f"{SWAGGER_ASSETS}/swagger-ui-standalone-preset.js",
                    favicon=f"<link rel='icon' type='image/png' href='{SWAGGER_ASSETS}/favicon-32x32.png'>",
                )
            ],
            # Each guarded operation names its own (gateway.routes.access); this is the default.
            components=Components(security_schemes=SECURITY_SCHEMES),
            security=[{USER_TOKEN: []}, {API_KEY: []}],
        ),
    )
    app.asgi_handler = answer_head_as_get(
        read_bodies_in_time(app.asgi_handler, settings.body_timeout_seconds)
    )
    return app
