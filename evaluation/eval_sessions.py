"""The gateway's tenant API as the eval runner uses it: start a session in eval mode, end it, fetch its eval
results (the tool calls and transcript the worker kept for it).

    POST   /v1/agents/{agent}/sessions   {"evalMode": true, "region": ...}   -> room, LiveKit URL, caller token
    DELETE /v1/sessions/{id}
    GET    /v1/sessions/{id}/eval                                             -> SessionEvalRecord

Eval results exist only for sessions started with evalMode and only when the agent's spec records transcripts
(`spec.observability.recordTranscripts`); otherwise the gateway says why and the runner judges by audio alone.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from voxfleet.api.eval_record import SessionEvalRecord
from voxfleet.devplatform.sessions_client import GatewayRefused, SessionGrant

TIMEOUT_S = 15.0
RETRYABLE = (429, 503)  # quota or no free slot right now: other scenarios of this run will free one
START_PATIENCE_S = 120.0
RECORD_PATIENCE_S = 10.0
FINAL_REFUSALS = ("not_an_eval_session", "transcripts_disabled", "missing_api_key", "invalid_api_key",
                  "tenant_unavailable")


@dataclass(frozen=True)
class EvalResults:
    """What the gateway answered for a session's eval results: the record, or why there is none."""

    record: SessionEvalRecord | None
    status: str  # "returned", or the gateway's error code (transcripts_disabled, not_an_eval_session, ...)
    message: str = ""


class EvalSessions:
    def __init__(self, base_url: str, api_key: str, *, timeout: float = TIMEOUT_S):
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout,
                                       headers={"Authorization": f"Bearer {api_key}"})
        # How long start() waits out 429/503 unless told otherwise (a load run shortens it as its end nears).
        self.start_patience_s = START_PATIENCE_S
        self.refusals: list[tuple[float, str]] = []  # (monotonic time, code) of every 429/503 a start met

    async def aclose(self) -> None:
        await self._http.aclose()

    async def start(self, agent: str, *, region: str | None = None, metadata: dict[str, Any] | None = None,
                    patience_s: float | None = None) -> SessionGrant:
        """A session in eval mode; waits out 429/503 (as their Retry-After says) up to ``patience_s`` (default
        `start_patience_s`), noting each refusal in `refusals`."""
        patience_s = self.start_patience_s if patience_s is None else patience_s
        body: dict[str, Any] = {"evalMode": True}
        if region:
            body["region"] = region
        if metadata:
            body["metadata"] = metadata
        deadline = time.monotonic() + patience_s
        while True:
            response = await self._http.post(f"/v1/agents/{agent}/sessions", json=body)
            if response.status_code in RETRYABLE:
                self.refusals.append((time.monotonic(),
                                      str(_error_body(response).get("code") or response.status_code)))
            if response.status_code not in RETRYABLE or time.monotonic() > deadline:
                return SessionGrant.from_body(_json(response))
            await asyncio.sleep(min(_retry_after(response), max(0.1, deadline - time.monotonic())))

    async def end(self, session_id: str) -> None:
        response = await self._http.delete(f"/v1/sessions/{session_id}")
        if response.status_code not in (204, 404):  # 404: it had already ended and been forgotten
            _json(response)

    async def results(self, session_id: str, *, patience_s: float = RECORD_PATIENCE_S) -> EvalResults:
        """The session's eval record once its worker has finished it (``complete``), or why there is none."""
        deadline = time.monotonic() + patience_s
        while True:
            response = await self._http.get(f"/v1/sessions/{session_id}/eval")
            if response.status_code != 200:
                error = _error_body(response)
                code = str(error.get("code") or response.status_code)
                # A busy worker may miss the gateway's lookup: only these answers are final.
                if code in FINAL_REFUSALS or time.monotonic() > deadline:
                    return EvalResults(None, code, str(error.get("message") or response.text[:300]))
                await asyncio.sleep(0.5)
                continue
            try:
                record = SessionEvalRecord.model_validate(response.json())
            except (ValidationError, ValueError) as error:
                return EvalResults(None, "unreadable", f"the gateway's eval results do not match the contract:"
                                                       f" {str(error)[:300]}")
            if record.complete or time.monotonic() > deadline:
                return EvalResults(record, "returned")
            await asyncio.sleep(0.2)


    async def record_now(self, session_id: str) -> SessionEvalRecord | None:
        """The session's eval record as it stands (None when there is none, or the gateway cannot say now)."""
        try:
            response = await self._http.get(f"/v1/sessions/{session_id}/eval")
            return SessionEvalRecord.model_validate(response.json()) if response.status_code == 200 else None
        except (httpx.HTTPError, ValidationError, ValueError):
            return None


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.2, min(10.0, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _json(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        error = _error_body(response)
        raise GatewayRefused(response.status_code, str(error.get("code") or "error"),
                             str(error.get("message") or response.text[:200]), response.headers.get("Retry-After"))
    return response.json()
