"""Eval results: the tool calls and transcript of a session a tenant started with `evalMode: true`, for its eval
runner (`voxfleet eval`), fetched from the worker that ran the session.

Returned only when both hold: the session was started in eval mode (the worker kept a record), and the agent's
spec records transcripts (`spec.observability.recordTranscripts`, checked here against the current spec as
well as by the worker at dispatch). Another tenant's session id is a 404 like any unknown one.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from voxfleet.api.eval_record import SessionEvalRecord
from voxfleet.gateway import session_ids
from voxfleet.gateway.api_errors import ApiError, documented
from voxfleet.gateway.runtime import runtime_of
from voxfleet.gateway.sessions_api import SessionId
from voxfleet.gateway.tenant_auth import TenantContext, require_tenant
from voxfleet.gateway.worker_client import WorkerUnreachable

log = structlog.get_logger(__name__)

MAX_RECORD_BYTES = 2 << 20

router = APIRouter(tags=["sessions"])


@router.get("/v1/sessions/{session_id}/eval", response_model=SessionEvalRecord,
            summary="Tool calls and transcript of an eval-mode session",
            responses=documented(401, 403, 404, 422, 429, 502, 503))
async def get_session_eval(request: Request, session_id: SessionId,
                       tenant: TenantContext = Depends(require_tenant)) -> JSONResponse:
    runtime = runtime_of(request)
    ref = session_ids.decode(session_id, tenant=tenant.name, keys=runtime.session_keys)
    located = await runtime.locator.locate(tenant.name, session_id, ref) if ref is not None else []
    if not located:
        raise ApiError(404, "session_not_found", "This tenant has no such session (unknown, or ended long ago).")
    agent = runtime.agents.get(tenant.namespace, located[0].state.agent)
    if agent is not None and not agent.spec.observability.record_transcripts:
        raise _transcripts_disabled()
    client = runtime.worker_client
    answer: ApiError | None = None
    for found in located:  # a recovered session has a record on each worker it ran on; the first one answers
        try:
            response = await client.raw("GET", found.worker.ip or "", f"/v1/sessions/{session_id}/eval",
                                        max_bytes=MAX_RECORD_BYTES)
        except WorkerUnreachable as error:
            log.warning("eval results unreachable", pod=found.worker.name, error=str(error))
            answer = answer or ApiError(502, "worker_unreachable", "The session's worker did not answer; retry.")
            continue
        if response.status == 200 and len(response.body) <= MAX_RECORD_BYTES:
            try:
                record = SessionEvalRecord.model_validate_json(response.body)
            except ValidationError:
                answer = ApiError(502, "worker_error", "The worker's eval record did not match the contract.")
                continue
            return JSONResponse(record.to_wire())
        if response.error_code == "transcripts_disabled":
            raise _transcripts_disabled()
        answer = answer or ApiError(404, "not_an_eval_session", "This session was not started in eval mode; start"
                                                                " it with evalMode: true to get its tool calls and"
                                                                " transcript.")
    raise answer or ApiError(404, "session_not_found", "This tenant has no such session.")


def _transcripts_disabled() -> ApiError:
    return ApiError(403, "transcripts_disabled", "The agent's spec does not record transcripts"
                                                 " (spec.observability.recordTranscripts is false), so eval results"
                                                 " are not kept; turn it on to check tool calls and answers.")
