"""The worker control API: what the gateway and operator call (platform worker token), plus probes and metrics.

    POST   /v1/dispatch          claim a slot and start the session (201; 409 worker_full | draining)
    GET    /v1/sessions/{id}     the session's state
    DELETE /v1/sessions/{id}     end it (202 with the state; its slot frees as it ends)
    GET    /v1/load              LoadReport for the scaler and placement
    POST   /v1/drain             stop taking calls, finish the live ones, exit when idle (202 with the LoadReport;
                                 idempotent: a repeat answers the load again)
    GET    /healthz /readyz /metrics   no token (probes and Prometheus)

Every error is an ErrorBody. Validation errors never echo the request's values (the dispatch carries a
LiveKit token). Under /v1/ the token is checked before a byte of the body is read (401), and the body is bounded
as it arrives, chunked or not (413): an unauthenticated client can make the worker neither buffer nor parse.
"""

from __future__ import annotations

import hmac
import json
from typing import Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voxfleet.api.call_report import WorkerCallReport
from voxfleet.api.wire import DispatchRequest, DispatchResponse, ErrorBody, LoadReport, SessionState
from voxfleet.telemetry.tracing import context_from_traceparent
from voxfleet.worker.call_report import report_routes
from voxfleet.worker.eval_record import eval_routes
from voxfleet.worker.slots import SlotRefused
from voxfleet.worker.telemetry.metrics import REGISTRY

MAX_BODY_BYTES = 64 * 1024
# Paths FastAPI's own telemetry leaves out: probes, scrapes and the gateway's load polls, a few a second per
# worker, would bury the calls' traces (and cost the collector more than the calls).
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v1/load"})
# FastAPI's request spans (server spans that continue the caller's traceparent), through the worker's provider;
# not its per-dependency spans, nor its metrics (Prometheus has them) or its log records of validation errors,
# which quote the request's values (a dispatch carries a LiveKit token).
FASTAPI_TELEMETRY = {"tracing": True, "operation_spans": False, "metrics": False, "logs": False,
                     "auto_configure": False, "exclude": lambda scope: scope.get("path") in UNTRACED_PATHS}


class WorkerControl(Protocol):
    """What the API needs from the worker (voxfleet.worker.worker_process.WorkerProcess implements it)."""

    ready: bool
    draining: bool

    def dispatch(self, request: DispatchRequest) -> tuple[SessionState, bool]: ...
    def session(self, session_id: str) -> SessionState | None: ...
    def call_report(self, session_id: str) -> WorkerCallReport | None: ...
    async def end_session(self, session_id: str) -> SessionState | None: ...
    def load(self) -> LoadReport: ...
    def request_drain(self, reason: str) -> LoadReport: ...


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or []


def _error(status: int, code: str, message: str, details: list | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(code=code, message=message, details=details or [])
    return JSONResponse(body.to_wire(), status_code=status, headers=headers)


UNAUTHORIZED = "missing or wrong worker token: send Authorization: Bearer <token> with the platform's worker token"
TOO_LARGE = f"request bodies are limited to {MAX_BODY_BYTES} bytes"


def _token_matches(header: str, expected: bytes) -> bool:
    scheme, _, presented = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), expected)


class _BodyTooLarge(StarletteHTTPException):
    """Raised from inside receive(): FastAPI passes HTTPExceptions through its body parsing, the handler renders
    it as 413."""

    def __init__(self) -> None:
        super().__init__(413, TOO_LARGE)


class TokenFirst:
    """ASGI middleware for /v1/: the token from the headers alone (401 before the body is read), then the body
    counted as it arrives (413 past MAX_BODY_BYTES, with or without Content-Length). FastAPI would otherwise read
    and parse the body before a dependency checks the token."""

    def __init__(self, app: ASGIApp, expected: bytes):
        self.app, self.expected = app, expected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        headers = {name: value for name, value in scope.get("headers", [])}
        if not _token_matches(headers.get(b"authorization", b"").decode("latin-1"), self.expected):
            await _send_error(send, 401, "unauthorized", UNAUTHORIZED, [(b"www-authenticate", b"Bearer")])
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            await _send_error(send, 413, "too_large", TOO_LARGE)
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise _BodyTooLarge()
            return message

        await self.app(scope, bounded_receive, send)


async def _send_error(send: Send, status: int, code: str, message: str,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(ErrorBody(code=code, message=message).to_wire()).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def build_app(worker: WorkerControl, token: str) -> FastAPI:
    app = FastAPI(title="voxfleet worker", docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry=FASTAPI_TELEMETRY)
    expected = token.encode()

    def require_token(request: Request) -> None:
        # TokenFirst has checked already; kept so a route is never open by a middleware's mistake.
        if not _token_matches(request.headers.get("authorization", ""), expected):
            raise ApiError(401, "unauthorized", UNAUTHORIZED)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError):
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return _error(error.status, error.code, error.message, error.details, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError):
        details = [{"field": ".".join(str(p) for p in item.get("loc", ()) if p != "body"),
                    "problem": item.get("msg", "")} for item in error.errors()[:20]]
        return _error(422, "invalid_request", "the request body does not match the DispatchRequest contract;"
                                              " see details for each field", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(error.status_code, "http_error")
        return _error(error.status_code, code, str(error.detail))

    app.add_middleware(TokenFirst, expected=expected)

    @app.post("/v1/dispatch", status_code=201, dependencies=[Depends(require_token)])
    async def dispatch(body: DispatchRequest):
        # FastAPI's server span continues the gateway's traceparent header, and the session started here keeps
        # the context it was started in (voxfleet.worker.session). Without that span (FastAPI's telemetry off),
        # the body's copy of the traceparent is the parent: either way the session joins the call's trace.
        span = trace.get_current_span()
        span.set_attributes({"voxfleet.session_id": body.session_id, "voxfleet.recovery": body.recovery})
        if not worker.ready and not worker.draining:
            raise ApiError(503, "not_ready", "the worker is still loading its models; retry shortly")
        parent = None if span.get_span_context().is_valid else context_from_traceparent(body.traceparent)
        attached = otel_context.attach(parent) if parent is not None else None
        try:
            state, created = worker.dispatch(body)
        except SlotRefused as refused:
            raise ApiError(409, refused.code, refused.message) from None
        finally:
            if attached is not None:
                otel_context.detach(attached)
        response = DispatchResponse(session=state, load=worker.load())
        # A repeat of the same session id answers the same session, with the same status.
        return JSONResponse(response.to_wire(), status_code=201)

    @app.get("/v1/sessions/{session_id}", dependencies=[Depends(require_token)])
    async def get_session(session_id: str):
        state = worker.session(session_id)
        if state is None:
            raise ApiError(404, "session_not_found", f"no session {session_id[:200]!r} on this worker")
        return JSONResponse(state.to_wire())

    @app.delete("/v1/sessions/{session_id}", dependencies=[Depends(require_token)])
    async def delete_session(session_id: str):
        state = await worker.end_session(session_id)
        if state is None:
            raise ApiError(404, "session_not_found", f"no session {session_id[:200]!r} on this worker")
        return JSONResponse(state.to_wire(), status_code=202 if state.phase != "ended" else 200)

    app.include_router(eval_routes(worker, require_token))  # GET /v1/sessions/{id}/eval (voxfleet eval)
    # GET /v1/sessions/{id}/report: the end-of-call report the gateway stores (voxfleet.worker.call_report)
    app.include_router(report_routes(lambda session_id: worker.call_report(session_id), require_token))

    @app.get("/v1/load", dependencies=[Depends(require_token)])
    async def load():
        return JSONResponse(worker.load().to_wire())

    @app.post("/v1/drain", status_code=202, dependencies=[Depends(require_token)])
    async def drain():
        # The same drain as SIGTERM (main.serve() finishes it and exits). No body: nothing to validate.
        return JSONResponse(worker.request_drain("request").to_wire(), status_code=202)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if worker.draining:
            return _error(503, "draining", "the worker is draining and takes no new sessions")
        if not worker.ready:
            return _error(503, "not_ready", "the worker is still loading its models")
        return {"status": "ready"}

    @app.get("/metrics")
    async def prometheus():
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
