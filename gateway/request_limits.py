"""ASGI middleware: refuse request bodies over the size limit (413) before anything reads them whole, and
record each request's route, status and latency (route templates, never raw paths, queries or headers)."""

from __future__ import annotations

import time

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voxfleet.gateway.api_errors import problem_bytes
from voxfleet.gateway.metrics import GatewayMetrics

log = structlog.get_logger(__name__)


class _TooLarge(HTTPException):
    """Raised from inside receive(): FastAPI passes HTTPExceptions through, and the app's handler renders it."""

    def __init__(self) -> None:
        super().__init__(413, "request body too large")


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body, headers = problem_bytes(status, code, message)  # a problem like every other error
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"The request body is larger than {self.max_bytes} bytes."
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    await _send_error(send, 400, "bad_content_length", "Content-Length is not a number.")
                    return
                if too_large:
                    await _send_error(send, 413, "request_too_large", message)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            incoming = await receive()
            if incoming["type"] == "http.request":
                received += len(incoming.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge()
            return incoming

        async def tracking_send(outgoing: Message) -> None:
            nonlocal started
            if outgoing["type"] == "http.response.start":
                started = True
            await send(outgoing)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_error(send, 413, "request_too_large", message)


class RequestRecorder:
    """Metrics per route template, and (when enabled) one access-log line per request with the route
    template instead of the raw path: no query strings, no headers, so nothing a client sends is echoed."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, access_log: bool = False):
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(route=template, method=method, status=str(status)).inc()
            elapsed = time.perf_counter() - started
            self.metrics.request_seconds.labels(route=template, method=method).observe(elapsed)
            if self.access_log:
                state = scope.get("state") or {}
                log.info("request", method=method, route=template, status=status,
                         ms=round(elapsed * 1000, 2), tenant=state.get("tenant"))
