"""The worker control API as the gateway calls it (trace context on every call).

Each call carries the token of the worker's own namespace (voxfleet.api.worker_credentials), derived from the
platform's root token, which never leaves the gateway: a worker (or anything at its address) learns only its
own tenant's token. An address that is no known worker's gets no request at all.

aiohttp, not httpx: a dispatch is on every allocation's path, and httpx's connection pool costs several times
aiohttp's CPU per request (measured with bench/gateway_bench.py: it was half of the gateway's time).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import aiohttp
from pydantic import ValidationError

from voxfleet.api.wire import DispatchRequest, DispatchResponse, ErrorBody, LoadReport, SessionState
from voxfleet.api.worker_credentials import NamespaceTokens
from voxfleet.gateway.worker_call_shares import ShareExhausted, TenantCallShares
from voxfleet.telemetry.tracing import traceparent_headers

DispatchAnswer = Literal["accepted", "full", "draining", "not_ready", "error"]
_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
WORKER_KEEPALIVE_SECONDS = 4.0  # below uvicorn's default timeout_keep_alive (5 s) on the worker


@dataclass(frozen=True)
class DispatchOutcome:
    answer: DispatchAnswer
    response: DispatchResponse | None = None
    detail: str = ""


@dataclass(frozen=True)
class WorkerAnswer:
    """A raw answer (status and body), for calls whose contract lives elsewhere (eval records)."""

    status: int
    body: bytes

    @property
    def error_code(self) -> str:
        try:
            return ErrorBody.model_validate_json(self.body).code
        except ValidationError:
            return ""


class WorkerUnreachable(Exception):
    pass


class WorkerClient:
    def __init__(self, root_token: str, port: int, *, timeout: float, namespace_at: Callable[[str], str | None],
                 max_connections: int = 512, shares: TenantCallShares | None = None):
        self.port = port
        self.timeout = timeout
        self._root_token = root_token
        self._namespace_at = namespace_at  # worker IP -> its Pod's namespace (the worker registry's watch)
        self._tokens = NamespaceTokens()
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self.shares = shares  # each tenant's bound of calls in flight (worker_call_shares.py); None: no bound

    @property
    def http(self) -> aiohttp.ClientSession:
        """Created on first use, inside the running event loop (aiohttp requires it)."""
        if self._session is None:
            # Idle connections are dropped before the worker's server drops them (uvicorn's keep-alive is 5 s):
            # otherwise a request sent as the server closes the connection fails, and a dispatch then counts as
            # an error and costs a second candidate (the load poll, every 5 s, hit that edge exactly).
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=64,
                                             keepalive_timeout=WORKER_KEEPALIVE_SECONDS, ttl_dns_cache=None,
                                             use_dns_cache=False)
            self._session = aiohttp.ClientSession(
                connector=connector, skip_auto_headers=("User-Agent",),
                timeout=aiohttp.ClientTimeout(total=self.timeout, connect=min(self.timeout, 1.0)))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, ip: str, path: str) -> str:
        host = f"[{ip}]" if ":" in ip else ip
        return f"http://{host}:{self.port}{path}"

    @staticmethod
    def _trace_headers() -> dict[str, str]:
        return traceparent_headers()  # W3C traceparent (and tracestate) of the current span, nothing else

    async def _call(self, method: str, ip: str, path: str, *, body: bytes | None = None,
                    timeout: float | None = None, max_bytes: int = 1 << 20) -> WorkerAnswer:
        namespace = self._namespace_at(ip)
        if not namespace:
            raise WorkerUnreachable("no known worker at this address")
        headers = self._trace_headers()
        headers["Authorization"] = f"Bearer {self._tokens.token(self._root_token, namespace)}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        # Always an explicit ClientTimeout: aiohttp reads `timeout=None` as "no timeout at all" (not the session's),
        # and a dispatch to a hung worker then held its connection until the worker died (40 s and more, measured).
        timeout = timeout or self.timeout
        request_timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 1.0))
        # The namespace is the tenant: a worker is trusted only in its Tenant's namespace (worker_registry.py).
        share = self.shares.held(namespace, timeout) if self.shares else contextlib.nullcontext()
        try:
            async with share, self.http.request(method, self.url(ip, path), data=body, headers=headers,
                                                timeout=request_timeout) as response:
                # read(n) answers what has arrived so far (one chunk), not n bytes: read until the end or the cap,
                # or a body larger than a chunk comes back cut short (a long call report, refused as not JSON).
                content = b""
                while len(content) <= max_bytes:
                    chunk = await response.content.read(max_bytes + 1 - len(content))
                    if not chunk:
                        break
                    content += chunk
                return WorkerAnswer(response.status, content)
        except ShareExhausted:
            raise WorkerUnreachable("the tenant's share of worker connections stayed full") from None
        except _ERRORS as error:
            raise WorkerUnreachable(type(error).__name__) from None

    async def raw(self, method: str, ip: str, path: str, *, max_bytes: int = 1 << 20) -> WorkerAnswer:
        """Any control-API call, answered as status and body (raises WorkerUnreachable)."""
        return await self._call(method, ip, path, max_bytes=max_bytes)

    async def dispatch(self, ip: str, request: DispatchRequest) -> DispatchOutcome:
        body = request.model_dump_json(by_alias=True, exclude_none=True).encode()
        try:
            answer = await self._call("POST", ip, "/v1/dispatch", body=body)
        except WorkerUnreachable as error:
            return DispatchOutcome("error", detail=str(error))
        if answer.status in (200, 201):
            try:
                return DispatchOutcome("accepted", DispatchResponse.model_validate_json(answer.body))
            except ValidationError:
                return DispatchOutcome("error", detail="unreadable dispatch answer")
        if answer.status == 409:
            code = answer.error_code
            return DispatchOutcome("draining" if code == "draining" else "full", detail=code)
        if answer.status == 503:
            return DispatchOutcome("not_ready", detail=answer.error_code)
        return DispatchOutcome("error", detail=f"{answer.status} {answer.error_code}")

    async def session(self, ip: str, session_id: str) -> SessionState | None:
        """The worker's view of a session; None when it does not know it (or cannot be reached)."""
        return await self._state("GET", ip, session_id, ok=(200,))

    async def end_session(self, ip: str, session_id: str) -> SessionState | None:
        return await self._state("DELETE", ip, session_id, ok=(200, 202))

    async def _state(self, method: str, ip: str, session_id: str, *, ok: tuple[int, ...]) -> SessionState | None:
        try:
            answer = await self._call(method, ip, f"/v1/sessions/{session_id}")
            if answer.status in ok:
                return SessionState.model_validate_json(answer.body)
        except (WorkerUnreachable, ValidationError):
            pass
        return None

    async def load(self, ip: str, *, timeout: float | None = None) -> LoadReport | None:
        try:
            answer = await self._call("GET", ip, "/v1/load", timeout=timeout or self.timeout)
            if answer.status == 200:
                return LoadReport.model_validate_json(answer.body)
        except (WorkerUnreachable, ValidationError):
            pass
        return None
