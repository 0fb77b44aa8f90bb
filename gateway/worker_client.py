"""The worker control API as the gateway calls it (platform worker token; trace context on every call)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import httpx
from opentelemetry import propagate
from pydantic import ValidationError

from voxfleet.api.wire import DispatchRequest, DispatchResponse, LoadReport, SessionState

DispatchAnswer = Literal["accepted", "full", "draining", "not_ready", "error"]


@dataclass(frozen=True)
class DispatchOutcome:
    answer: DispatchAnswer
    response: DispatchResponse | None = None
    detail: str = ""


class WorkerClient:
    def __init__(self, token: str, port: int, *, timeout: float, max_connections: int = 256):
        self.port = port
        self.timeout = timeout
        self.http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=httpx.Timeout(timeout, connect=min(timeout, 1.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))

    async def aclose(self) -> None:
        await self.http.aclose()

    def _url(self, ip: str, path: str) -> str:
        host = f"[{ip}]" if ":" in ip else ip
        return f"http://{host}:{self.port}{path}"

    @staticmethod
    def _trace_headers() -> dict[str, str]:
        headers: dict[str, str] = {}
        propagate.inject(headers)  # traceparent (and tracestate) of the current span
        return headers

    async def dispatch(self, ip: str, request: DispatchRequest) -> DispatchOutcome:
        try:
            response = await self.http.post(self._url(ip, "/v1/dispatch"), content=request.model_dump_json(
                by_alias=True, exclude_none=True), headers={"Content-Type": "application/json",
                                                             **self._trace_headers()})
        except httpx.HTTPError as error:
            return DispatchOutcome("error", detail=type(error).__name__)
        if response.status_code in (200, 201):
            try:
                return DispatchOutcome("accepted", DispatchResponse.model_validate_json(response.content))
            except ValidationError:
                return DispatchOutcome("error", detail="unreadable dispatch answer")
        if response.status_code == 409:
            code = _error_code(response)
            return DispatchOutcome("draining" if code == "draining" else "full", detail=code)
        if response.status_code == 503:
            return DispatchOutcome("not_ready", detail=_error_code(response))
        return DispatchOutcome("error", detail=f"{response.status_code} {_error_code(response)}")

    async def session(self, ip: str, session_id: str) -> SessionState | None:
        """The worker's view of a session; None when it does not know it (or cannot be reached)."""
        try:
            response = await self.http.get(self._url(ip, f"/v1/sessions/{session_id}"), headers=self._trace_headers())
            if response.status_code == 200:
                return SessionState.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError):
            pass
        return None

    async def end_session(self, ip: str, session_id: str) -> SessionState | None:
        try:
            response = await self.http.delete(self._url(ip, f"/v1/sessions/{session_id}"),
                                              headers=self._trace_headers())
            if response.status_code in (200, 202):
                return SessionState.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError):
            pass
        return None

    async def load(self, ip: str, *, timeout: float | None = None) -> LoadReport | None:
        try:
            response = await self.http.get(self._url(ip, "/v1/load"), timeout=timeout or self.timeout)
            if response.status_code == 200:
                return LoadReport.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError):
            pass
        return None


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code", ""))
    except ValueError:
        return ""
