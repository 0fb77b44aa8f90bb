"""The gateway's two FastAPI applications: the tenant API (routers, middleware, health) on the API port, and the
operational one (/metrics, health) on its own port, which the tenant Ingress never routes: /metrics names every
tenant and agent and their traffic, so it is for the platform's scraper, not for anyone holding the API's URL."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from voxfleet.api.wire import ErrorBody
from voxfleet.gateway import api_errors, openapi_document
from voxfleet.gateway.agents_api import router as agents_router
from voxfleet.gateway.call_reports import router as call_reports_router
from voxfleet.gateway.eval_results import router as eval_results_router
from voxfleet.gateway.history_retention import RetentionSweeper
from voxfleet.gateway.livekit_webhooks import router as webhooks_router
from voxfleet.gateway.webhooks_api import router as tenant_webhooks_router
from voxfleet.gateway.playground_files import mount_playground
from voxfleet.gateway.secrets_api import router as secrets_router
from voxfleet.gateway.sessions_api import record_room_call, router as sessions_router
from voxfleet.gateway.usage_api import router as usage_router
from voxfleet.gateway.rate_limits import RateLimitHeaders
from voxfleet.gateway.request_limits import BodySizeLimit, RequestRecorder
from voxfleet.gateway.runtime import GatewayRuntime, runtime_of
from voxfleet.gateway.settings import GatewaySettings

DESCRIPTION = """The voxfleet tenant API. Authenticate with `Authorization: Bearer <API key>`.
Every error is an RFC 9457 problem (`application/problem+json`: type, title, status, detail, instance) that also
carries `code` (stable), `message` and `details` (one per field: dotted path and JSON pointer). 429 and 503 carry
Retry-After; every answer to a request with a key carries RateLimit-Limit, -Remaining, -Reset and -Policy.
Agents have ETags: send If-Match on PUT, PATCH and DELETE to change only the version you read (else 412), and
If-None-Match: * on PUT to create only. A 201 says where the new resource is (Location)."""


def create_app(settings: GatewaySettings, runtime: GatewayRuntime | None = None) -> FastAPI:
    runtime = runtime or GatewayRuntime.build(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        sweeper = None
        if runtime.database is not None:  # records past their tenant's retention go (history_retention.py)
            sweeper = RetentionSweeper(runtime.database, runtime.tenants, settings, registry=runtime.metrics.registry)
            sweeper.start()
            # Calls placed for rooms started outside the API (an inbound SIP call) join the history too.
            runtime.room_events.on_dispatched = functools.partial(record_room_call, runtime.database)
        try:
            yield
        finally:
            if sweeper is not None:
                await sweeper.stop()
            await runtime.stop()

    app = FastAPI(title="voxfleet gateway", version="v1", description=DESCRIPTION, lifespan=lifespan)
    app.state.runtime = runtime
    # The store (voxfleet.store.database.Database) or None; its pool opens connections on first use.
    # gateway/store_access.py require_database answers 503 database_not_configured when it is None.
    app.state.database = runtime.database
    api_errors.install(app)
    openapi_document.install(app)  # stable operationIds; problems documented as application/problem+json
    app.include_router(agents_router)
    app.include_router(secrets_router)  # write-only: names and keys come back, values never
    app.include_router(sessions_router)
    app.include_router(eval_results_router)  # GET /v1/sessions/{id}/eval (voxfleet eval)
    app.include_router(call_reports_router)  # no routes: its lifespan runs the end-of-call report sweeper
    app.include_router(usage_router)  # GET /v1/usage: by agent and day, and the month's limits
    app.include_router(webhooks_router)
    app.include_router(tenant_webhooks_router)  # /v1/webhooks; its lifespan runs the webhook delivery

    _add_health(app)  # load balancers probe the port they send traffic to

    mount_playground(app, settings.playground_dir)  # the browser playground, when its bundle is built

    if settings.cors_allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_allow_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "traceparent", "If-Match",
                                          "If-None-Match", "Idempotency-Key"],
                           expose_headers=["ETag", "Location", "Retry-After", "RateLimit-Limit",
                                           "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy"],
                           max_age=600)
    app.add_middleware(RateLimitHeaders)  # on every answer to a request with a tenant's key
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestRecorder, metrics=runtime.metrics, access_log=settings.access_log)
    return app


def _add_health(app: FastAPI, *, watch_detail: bool = False) -> None:
    @app.get("/healthz", tags=["health"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Watches are synced and the gateway takes requests")
    async def readyz(request: Request) -> Response:
        ready, detail = runtime_of(request).readiness()
        if not watch_detail:  # the API port is public: regions yes (tenants see them anyway), watch names no
            detail.pop("watches", None)
        if ready:  # "ready", or "degraded": serving from cached copies, or in the regions whose LiveKit works
            return JSONResponse(detail)
        message = {"loading": "The gateway is still loading its view of the cluster.",
                   "stale": "The gateway has been cut off from the apiserver for too long.",
                   "no_livekit": "No region's LiveKit answers."}[detail["status"]]
        body = {**ErrorBody(code="not_ready", message=message).to_wire(), **detail}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


def create_operational_app(runtime: GatewayRuntime) -> FastAPI:
    """/metrics, /healthz and /readyz on the operational port. No lifespan: the API application starts and stops
    the runtime both serve."""
    app = FastAPI(title="voxfleet gateway (operational)", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.runtime = runtime
    api_errors.install(app)
    _add_health(app, watch_detail=True)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(runtime_of(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
