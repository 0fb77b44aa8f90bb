"""Sessions: start a call with an agent, look at it, end it.

`POST /v1/agents/{agent}/sessions` claims a slot at a warm worker of the agent in the nearest usable region
and answers with everything a client needs to join: the LiveKit URL and room of that region and a short-lived
caller token. The session id is signed and names where the session lives; another tenant's id is a 404.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Path, Request, Response
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from pydantic import Field, field_validator

from voxfleet.api.model_base import DNS_LABEL, ApiModel
from voxfleet.api.wire import MAX_METADATA_BYTES, SESSION_ID_PATTERN, EndReason, SessionPhase
from voxfleet.api import room_names
from voxfleet.gateway import session_ids
from voxfleet.gateway.agent_directory import AgentInfo
from voxfleet.gateway.agents_api import AgentName
from voxfleet.gateway.api_errors import ApiError, documented
from voxfleet.gateway.openapi_links import AFTER_SESSION_CREATE
from voxfleet.gateway.runtime import GatewayRuntime, runtime_of
from voxfleet.gateway.tenant_auth import TenantContext, require_tenant
from voxfleet.kube.errors import KubeApiError
from voxfleet.telemetry.tracing import links_from_headers

log = structlog.get_logger(__name__)

SessionId = Annotated[str, Path(min_length=8, max_length=200, pattern=SESSION_ID_PATTERN,
                                description="The session id returned when the session was created.")]


class SessionCreate(ApiModel):
    """How and where to start the call (all optional)."""

    region: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL,
                               description="Preferred region; others follow by latency when it is full.")
    caller_region: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL,
                                      description="Where the caller is (a region name of the platform's latency"
                                                  " matrix): the nearest region with capacity is chosen.")
    participant_identity: str | None = Field(default=None, pattern=room_names.CALLER_IDENTITY_PATTERN,
                                             description="The caller's LiveKit identity (default: generated).")
    participant_name: str | None = Field(default=None, max_length=128, description="The caller's display name.")
    metadata: dict[str, Any] = Field(default_factory=dict, description=f"Passed to the agent's worker (at most"
                                                                       f" {MAX_METADATA_BYTES} bytes as JSON).")
    eval_mode: bool = Field(default=False, description="An eval run's call (`voxfleet eval`): the worker keeps its tool"
                                                       " calls and transcript for GET /v1/sessions/{id}/eval, when the"
                                                       " agent's spec records transcripts.")

    @field_validator("participant_identity")
    @classmethod
    def _not_an_agent(cls, value: str | None) -> str | None:
        if value is not None and room_names.is_agent_identity(value):
            raise ValueError(f"identities starting with {room_names.AGENT_IDENTITY_PREFIX!r} are reserved")
        return value

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON")
        return value


class SessionCreated(ApiModel):
    """Everything the caller needs to join the call."""

    session_id: str = Field(description="Signed id; use it to read or end the session.")
    agent: str
    region: str = Field(description="The region the session runs in.")
    room: str = Field(description="LiveKit room name.")
    livekit_url: str = Field(description="The region's LiveKit URL to connect to.")
    token: str = Field(description="The caller's LiveKit access token (short-lived: join before it expires).")
    participant_identity: str
    token_expires_at: datetime = Field(description="Join before this time.")
    expires_at: datetime = Field(description="The session ends by this time at the latest (maxSessionSeconds).")


class SessionView(ApiModel):
    """A session as its worker reports it."""

    session_id: str
    agent: str
    region: str
    room: str
    phase: SessionPhase
    started_at: datetime
    ended_at: datetime | None = None
    end_reason: EndReason | None = None
    recovered: bool = Field(default=False, description="The session moved to another worker after its first"
                                                       " one was lost.")
    expires_at: datetime


router = APIRouter(tags=["sessions"])


@router.post("/v1/agents/{agent}/sessions", status_code=201, response_model=SessionCreated,
             summary="Start a session with an agent",
             responses={**documented(401, 403, 404, 413, 422, 429, 503), 201: {"links": AFTER_SESSION_CREATE}})
async def create_session(request: Request, agent: AgentName, body: SessionCreate | None = None,
                         tenant: TenantContext = Depends(require_tenant)) -> SessionCreated:
    runtime = runtime_of(request)
    body = body or SessionCreate()
    info = await _agent(runtime, tenant, agent)
    regions = _regions(runtime, tenant, info, body)
    # The call's trace starts here, under the platform's sampler; the worker's spans join it through the dispatch,
    # so one trace runs from this request to the agent's last answer. The tenant's own traceparent, if it sent
    # one, is a link: as the parent it would choose the trace id and whether the call is traced at all.
    with runtime.tracing.tracer("voxfleet.gateway").start_as_current_span(
            "POST /v1/agents/{agent}/sessions", context=Context(), links=links_from_headers(request.headers),
            kind=SpanKind.SERVER, attributes={
                "http.request.method": "POST", "http.route": "/v1/agents/{agent}/sessions",
                "voxfleet.tenant": tenant.name, "voxfleet.agent": agent}) as span:
        try:
            allocation = await runtime.allocator.allocate(
                tenant=tenant.name, namespace=tenant.namespace,
                quota_limit=tenant.spec.quotas.max_concurrent_sessions, agent=info, regions=regions,
                caller_identity=body.participant_identity, caller_name=body.participant_name or "",
                metadata=body.metadata, eval_mode=body.eval_mode)
        except ApiError as error:
            span.set_attribute("http.response.status_code", error.status)
            raise
        span.set_attributes({"voxfleet.session_id": allocation.session_id, "voxfleet.region": allocation.region,
                             "http.response.status_code": 201})
        assert allocation.caller_token is not None
        log.info("session started", session_id=allocation.session_id, tenant=tenant.name, agent=agent,
                 region=allocation.region, room=allocation.room, pod=allocation.worker.name)
    return SessionCreated(session_id=allocation.session_id, agent=agent, region=allocation.region,
                          room=allocation.room, livekit_url=allocation.livekit_url, token=allocation.caller_token.jwt,
                          participant_identity=allocation.caller_identity or "",
                          token_expires_at=allocation.caller_token.expires_at, expires_at=allocation.expires_at)


@router.get("/v1/sessions/{session_id}", response_model=SessionView, summary="Read a session",
            responses=documented(401, 403, 404, 422, 429))
async def get_session(request: Request, session_id: SessionId,
                      tenant: TenantContext = Depends(require_tenant)) -> SessionView:
    runtime = runtime_of(request)
    ref = _ref(runtime, tenant, session_id)
    located = await runtime.locator.locate(tenant.name, session_id, ref)
    if not located:
        raise _not_found()
    state = located[0].state
    return SessionView(session_id=session_id, agent=state.agent, region=state.region, room=state.room,
                       phase=state.phase, started_at=state.started_at, ended_at=state.ended_at,
                       end_reason=state.end_reason, recovered=any(x.state.recovery for x in located),
                       expires_at=datetime.fromtimestamp(ref.expires_at, tz=timezone.utc))


@router.delete("/v1/sessions/{session_id}", status_code=204, summary="End a session (the room closes)",
               responses=documented(401, 403, 404, 422, 429))
async def delete_session(request: Request, session_id: SessionId,
                         tenant: TenantContext = Depends(require_tenant)) -> Response:
    runtime = runtime_of(request)
    ref = _ref(runtime, tenant, session_id)
    located = await runtime.locator.locate(tenant.name, session_id, ref)
    for found in located:
        if found.state.phase != "ended":
            await runtime.worker_client.end_session(found.worker.ip or "", session_id)
    if located:
        await runtime.close_room(ref.region, located[0].state.room)
        return Response(status_code=204)
    raise _not_found()


def _ref(runtime: GatewayRuntime, tenant: TenantContext, session_id: str) -> session_ids.SessionRef:
    ref = session_ids.decode(session_id, tenant=tenant.name, keys=runtime.session_keys)
    if ref is None:
        raise _not_found()
    return ref


def _not_found() -> ApiError:
    return ApiError(404, "session_not_found", "This tenant has no such session (unknown, or ended long ago).")


async def _agent(runtime: GatewayRuntime, tenant: TenantContext, agent: str) -> AgentInfo:
    info = runtime.agents.get(tenant.namespace, agent)
    if info is None:
        try:  # created a moment ago and not yet in this replica's watch: ask the apiserver once
            info = runtime.agents.parse(await runtime.kube.get("VoiceAgent", agent, tenant.namespace))
        except KubeApiError:
            info = None
    if info is None:
        raise ApiError(404, "agent_not_found", f"This tenant has no agent named {agent!r} (or its spec is invalid).")
    return info


def _regions(runtime: GatewayRuntime, tenant: TenantContext, info: AgentInfo, body: SessionCreate) -> list[str]:
    served = [r for r in info.regions if r in set(tenant.spec.allowed_regions) & set(runtime.settings.regions)]
    if body.region is not None and body.region not in served:
        raise ApiError(422, "region_not_served", f"The agent does not run in {body.region!r} for this tenant;"
                                                 f" it runs in: {', '.join(served) or 'no usable region'}.",
                       details=[{"field": "region", "message": "not a region of this agent", "reason": "NotFound"}])
    known_origins = set(runtime.settings.latency_ms) | set(runtime.settings.regions)
    if body.caller_region is not None and body.caller_region not in known_origins:
        raise ApiError(422, "unknown_caller_region", f"Unknown caller region {body.caller_region!r}; known:"
                                                     f" {', '.join(sorted(known_origins))}.",
                       details=[{"field": "callerRegion", "message": "unknown region", "reason": "NotFound"}])
    regions = runtime.allocator.regions_for(tenant.spec.allowed_regions, info, preference=body.region,
                                            caller_region=body.caller_region)
    if not regions:
        raise ApiError(503, "no_capacity", "None of the agent's regions is usable for this tenant right now.",
                       headers={"Retry-After": str(runtime.settings.retry_after_seconds)})
    # A region whose LiveKit is down would take the call and leave the caller in no room: the next region by
    # latency takes it instead (the preferred region too: a preference, not a demand).
    reachable = runtime.livekit_health.usable(regions)
    if not reachable:
        raise ApiError(503, "livekit_unavailable", "The LiveKit of every region this agent runs in is down right"
                                                   " now; retry after Retry-After seconds.",
                       headers={"Retry-After": str(runtime.settings.retry_after_seconds)})
    if len(reachable) < len(regions):
        log.info("regions skipped: their livekit is down", skipped=[r for r in regions if r not in reachable],
                 agent=info.name, tenant=tenant.name)
    return reachable
