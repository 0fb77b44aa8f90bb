"""Sessions: start a call with an agent, look at it (live, or in the call history once it ended), end and erase it.

`POST /v1/agents/{agent}/sessions` claims a slot at a warm worker of the agent in the nearest usable region
and answers with everything a client needs to join: the LiveKit URL and room of that region and a short-lived
caller token. The session id is signed and names where the session lives; another tenant's id is a 404.

With a database (VOXFLEET_DATABASE_URL), every call placed also gets its history row (`sessions`, status live)
and its `session.started` webhook event in one transaction; an `Idempotency-Key` makes a retried create answer
the call it already placed (gateway/session_idempotency.py); `GET /v1/sessions` pages through the history, and
`DELETE /v1/sessions/{id}` erases the call's record and transcript as well as ending it. Without a database,
sessions work as before and the history answers 503 `database_not_configured`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from pydantic import Field, field_validator
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from voxfleet.api.model_base import DNS_LABEL, ApiModel
from voxfleet.api.wire import MAX_METADATA_BYTES, SESSION_ID_PATTERN, SessionPhase
from voxfleet.api import room_names
from voxfleet.api.call_report import CallReport, CallUsage, ReportEndReason, TranscriptLine
from voxfleet.gateway import history_cursors, session_history, session_ids, session_idempotency, spend_limits
from voxfleet.gateway.agent_directory import AgentInfo
from voxfleet.gateway.allocation import Allocation
from voxfleet.gateway.agents_api import AgentName
from voxfleet.gateway.api_errors import ApiError, documented
from voxfleet.gateway.openapi_links import AFTER_SESSION_CREATE
from voxfleet.gateway.pricing import PriceList
from voxfleet.gateway.resource_locations import set_location
from voxfleet.gateway.runtime import GatewayRuntime, runtime_of
from voxfleet.gateway.store_access import NOT_CONFIGURED, require_database
from voxfleet.gateway.tenant_auth import TenantContext, require_tenant
from voxfleet.kube.errors import KubeApiError
from voxfleet.store import session_erasures, session_records, usage, webhook_outbox
from voxfleet.store.database import Database
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
    """A session: while it runs, as its worker reports it; once ended, from the call history with its report."""

    session_id: str
    agent: str
    region: str
    room: str
    phase: SessionPhase
    status: session_history.SessionStatus = Field(default="live", description="live or ended, as the history"
                                                                             " records it.")
    channel: str = "web"
    started_at: datetime
    ended_at: datetime | None = None
    end_reason: ReportEndReason | None = None
    duration_ms: int | None = None
    cost_micros: int | None = None
    recovered: bool = Field(default=False, description="The session moved to another worker after its first"
                                                       " one was lost.")
    expires_at: datetime
    report: CallReport | None = Field(default=None, description="The end-of-call report (without the transcript),"
                                                                " once the call ended and was reported.")
    transcript: list[TranscriptLine] | None = Field(default=None, description="What was said, only when the agent"
                                                                              " records transcripts.")


router = APIRouter(tags=["sessions"])

ROOM_CHANNEL = "room"  # how a call joined when its room was started outside the API (an inbound SIP call)
ERASE_MEMORY = timedelta(hours=1)  # tombstones outlive the session id's expiry by this much
IdempotencyKey = Annotated[str | None, Header(alias=session_idempotency.HEADER, description=(
    "Any 1-255 visible ASCII characters (e.g. a UUID): a retry with the same key and request answers the same"
    " session (with a fresh token) and never places a second call; the same key with another request is 422."))]


def database_of(request: Request) -> Database | None:
    """The store, or None (no VOXFLEET_DATABASE_URL): sessions then work as they did before there was one."""
    return getattr(request.app.state, "database", None)


@contextlib.contextmanager
def _database_answers(runtime: GatewayRuntime) -> Iterator[None]:
    """A database that does not answer is a 503 with Retry-After, never a 500 (nor its message: it may name the
    server)."""
    try:
        yield
    except (SQLAlchemyError, OSError) as error:
        log.warning("the database did not answer", error_type=type(error).__name__)
        raise ApiError(503, "database_unavailable", "The call history cannot be reached right now; retry after"
                                                    " Retry-After seconds.",
                       headers={"Retry-After": str(runtime.settings.retry_after_seconds)}) from None


@router.post("/v1/agents/{agent}/sessions", status_code=201, response_model=SessionCreated,
             summary="Start a session with an agent",
             responses={**documented(401, 403, 404, 413, 422, 429, 503), 201: {"links": AFTER_SESSION_CREATE}})
async def create_session(request: Request, response: Response, agent: AgentName, body: SessionCreate | None = None,
                         idempotency_key: IdempotencyKey = None,
                         tenant: TenantContext = Depends(require_tenant)) -> SessionCreated:
    runtime = runtime_of(request)
    body = body or SessionCreate()
    database = database_of(request)
    key = session_idempotency.checked_key(idempotency_key)
    if key is not None and database is None:
        raise ApiError(503, NOT_CONFIGURED, f"This gateway has no database configured, so it cannot honour"
                                            f" {session_idempotency.HEADER}; retry without it, or ask your platform"
                                            f" team.")
    info = await _agent(runtime, tenant, agent)
    regions = _regions(runtime, tenant, info, body)
    if key is None:
        await spend_limits.check(database, tenant=tenant, metrics=runtime.metrics)
        allocation = await _place(runtime, request, tenant, info, regions, body, caller_identity=None)
        if database is not None:
            await _record(runtime, database, tenant, agent, allocation)
        created = _created(allocation, agent)
    else:
        created = await _create_once(runtime, request, response, database, tenant, info, regions, body, key)
    set_location(request, response, "v1", "sessions", created.session_id)
    return created


async def _create_once(runtime: GatewayRuntime, request: Request, response: Response, database: Database,
                       tenant: TenantContext, info: AgentInfo, regions: list[str], body: SessionCreate,
                       key: str) -> SessionCreated:
    """A keyed create: the call of an earlier request with this key, or a new one placed exactly once."""
    fingerprint = session_idempotency.request_hash(info.name, body)
    replayed = await _replay(runtime, response, database, tenant, key, fingerprint, body)
    if replayed is not None:
        return replayed
    await spend_limits.check(database, tenant=tenant, metrics=runtime.metrics)  # after the replay: see S5's note
    identity = body.participant_identity or session_idempotency.caller_identity(tenant.name, key)
    placeholder = session_idempotency.placeholder_session_id()
    allocation: Allocation | None = None
    try:
        async with database.transaction() as conn:
            if await session_records.reserve_idempotency_key(
                    conn, tenant=tenant.name, placeholder_id=placeholder, agent=info.name, channel="web",
                    started_at=datetime.now(timezone.utc), idempotency_key=key, request_hash=fingerprint):
                # This request holds the key until it commits: a concurrent retry waits for it, then replays.
                allocation = await _place(runtime, request, tenant, info, regions, body, caller_identity=identity)
                started_at = datetime.now(timezone.utc)
                await session_records.settle(conn, tenant=tenant.name, placeholder_id=placeholder,
                                             session_id=allocation.session_id, region=allocation.region,
                                             room=allocation.room, worker=allocation.worker.name,
                                             started_at=started_at)
                await _announce_start(conn, tenant.name, info.name, allocation, started_at)
    except (SQLAlchemyError, OSError):
        if allocation is not None:  # placed but not recorded: no unrecorded (unbilled) call may go on
            await runtime.worker_client.end_session(allocation.worker.ip or "", allocation.session_id)
        with _database_answers(runtime):
            raise
    if allocation is not None:
        return _created(allocation, info.name)
    replayed = await _replay(runtime, response, database, tenant, key, fingerprint, body)
    if replayed is None:  # its call was erased in between: the key is free again, but not for this very request
        raise ApiError(409, "idempotency_key_in_use", f"A request with this {session_idempotency.HEADER} was being"
                                                      " handled; retry.",
                       headers={"Retry-After": str(runtime.settings.retry_after_seconds)})
    return replayed


async def _replay(runtime: GatewayRuntime, response: Response, database: Database, tenant: TenantContext, key: str,
                  fingerprint: str, body: SessionCreate) -> SessionCreated | None:
    """The answer to a retry: the recorded call of this key with a fresh caller token (a token is never stored),
    or None when no committed call holds the key."""
    with _database_answers(runtime):
        async with database.connection() as conn:
            row = await session_records.by_idempotency_key(conn, tenant=tenant.name, idempotency_key=key)
    if row is None:
        return None
    if row["request_hash"] != fingerprint:
        raise session_idempotency.reused_key()
    identity = body.participant_identity or session_idempotency.caller_identity(tenant.name, key)
    token = runtime.tokens.caller(row["region"], room=row["room"], identity=identity,
                                  name=body.participant_name or identity,
                                  ttl_seconds=runtime.settings.caller_token_ttl_seconds)
    ref = session_ids.decode(row["session_id"], tenant=tenant.name, keys=runtime.session_keys)
    response.headers["Idempotent-Replayed"] = "true"
    log.info("session create replayed", session_id=row["session_id"], tenant=tenant.name, agent=row["agent"])
    return SessionCreated(session_id=row["session_id"], agent=row["agent"], region=row["region"], room=row["room"],
                          livekit_url=runtime.tokens.url(row["region"]), token=token.jwt,
                          participant_identity=identity, token_expires_at=token.expires_at,
                          expires_at=_expiry(ref, row["started_at"]))


async def _place(runtime: GatewayRuntime, request: Request, tenant: TenantContext, info: AgentInfo,
                 regions: list[str], body: SessionCreate, *, caller_identity: str | None) -> Allocation:
    agent = info.name
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
                caller_identity=caller_identity or body.participant_identity, caller_name=body.participant_name or "",
                metadata=body.metadata, eval_mode=body.eval_mode)
        except ApiError as error:
            span.set_attribute("http.response.status_code", error.status)
            raise
        span.set_attributes({"voxfleet.session_id": allocation.session_id, "voxfleet.region": allocation.region,
                             "http.response.status_code": 201})
        assert allocation.caller_token is not None
        log.info("session started", session_id=allocation.session_id, tenant=tenant.name, agent=agent,
                 region=allocation.region, room=allocation.room, pod=allocation.worker.name)
    return allocation


async def record_started(database: Database, *, tenant: str, agent: str, allocation: Allocation,
                         channel: str) -> None:
    """A placed call's history row and its session.started event, in one transaction."""
    started_at = datetime.now(timezone.utc)
    async with database.transaction() as conn:
        await session_records.insert_live(conn, tenant=tenant, session_id=allocation.session_id, agent=agent,
                                          region=allocation.region, room=allocation.room,
                                          worker=allocation.worker.name, channel=channel, started_at=started_at)
        await _announce_start(conn, tenant, agent, allocation, started_at, channel=channel)


async def record_room_call(database: Database, tenant: str, agent: str, allocation: Allocation) -> None:
    """room_events' hook: a call placed for a room started outside the API (SIP, or a LiveKit client)."""
    await record_started(database, tenant=tenant, agent=agent, allocation=allocation, channel=ROOM_CHANNEL)


async def _record(runtime: GatewayRuntime, database: Database, tenant: TenantContext, agent: str,
                  allocation: Allocation) -> None:
    """The call's history row and event. A call the history cannot record is ended at once (503): an unrecorded
    call would be unbilled and invisible to the tenant's history."""
    try:
        await record_started(database, tenant=tenant.name, agent=agent, allocation=allocation, channel="web")
    except (SQLAlchemyError, OSError):
        await runtime.worker_client.end_session(allocation.worker.ip or "", allocation.session_id)
        with _database_answers(runtime):
            raise


async def _announce_start(conn: Any, tenant: str, agent: str, allocation: Allocation, started_at: datetime, *,
                          channel: str = "web") -> None:
    event_id = "evt_" + hashlib.sha256(f"session.started|{tenant}|{allocation.session_id}".encode()).hexdigest()[:32]
    await webhook_outbox.enqueue(conn, tenant=tenant, event_type="session.started", event_id=event_id,
                                 occurred_at=started_at, payload={
                                     "sessionId": allocation.session_id, "agent": agent,
                                     "region": allocation.region, "room": allocation.room, "channel": channel,
                                     "startedAt": started_at.isoformat().replace("+00:00", "Z")})


def _created(allocation: Allocation, agent: str) -> SessionCreated:
    assert allocation.caller_token is not None
    return SessionCreated(session_id=allocation.session_id, agent=agent, region=allocation.region,
                          room=allocation.room, livekit_url=allocation.livekit_url, token=allocation.caller_token.jwt,
                          participant_identity=allocation.caller_identity or "",
                          token_expires_at=allocation.caller_token.expires_at, expires_at=allocation.expires_at)


def _sqlstate(error: DBAPIError) -> str | None:
    cause = error.orig
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None) or getattr(
        getattr(cause, "__cause__", None), "sqlstate", None)


def _expiry(ref: session_ids.SessionRef | None, started_at: datetime) -> datetime:
    """When the session's id expires (its session ends by then); a record whose id no longer verifies (the
    signing key was rotated out long after it ended) shows its start."""
    return datetime.fromtimestamp(ref.expires_at, tz=timezone.utc) if ref is not None else started_at


@router.get("/v1/sessions", response_model=session_history.SessionPage, summary="List the call history",
            description="The tenant's calls, newest first (by start), live and ended, as long as their records are"
                        " kept (the Tenant's history.retentionDays). Pages of `limit` (1-200, default 50);"
                        " follow `nextCursor` for older ones.",
            responses=documented(401, 403, 422, 429, 503))
async def list_sessions(
        request: Request, tenant: TenantContext = Depends(require_tenant),
        limit: Annotated[int, Query(ge=1, le=session_history.MAX_PAGE, description="Calls per page.")] = 50,
        cursor: Annotated[str | None, Query(max_length=history_cursors.MAX_CURSOR_CHARS,
                                            description="nextCursor of the previous page (same filters).")] = None,
        agent: Annotated[str | None, Query(max_length=63, pattern=DNS_LABEL, description="Only this agent's.")] = None,
        started_from: Annotated[str | None, Query(alias="from", description="Started at or after (RFC 3339).")] = None,
        to: Annotated[str | None, Query(description="Started before (RFC 3339).")] = None,
        end_reason: Annotated[ReportEndReason | None, Query(alias="endReason")] = None,
        status: Annotated[session_history.SessionStatus | None, Query()] = None) -> session_history.SessionPage:
    # The parameters above document the query (and FastAPI judges their types); page_request judges it whole:
    # unknown or repeated parameters, the time range, the cursor against these very filters.
    runtime = runtime_of(request)
    database = require_database(request)
    where, after, size = session_history.page_request(request, tenant=tenant.name, keys=runtime.session_keys)
    with _database_answers(runtime):
        try:
            async with database.connection() as conn:
                rows, more = await session_records.page(conn, where, after=after, limit=size)
        except DBAPIError as error:
            if _sqlstate(error) != session_records.QUERY_CANCELED:
                raise
            raise ApiError(422, "history_query_too_costly", "This history query read too much before filling a page"
                                                            " (a rare endReason or status over a long history);"
                                                            " narrow it with agent, from and to.",
                           details=[{"field": "from", "message": "narrow the time range (or add agent)",
                                     "reason": "TooCostly"}]) from None
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = history_cursors.encode(
            session_records.PagePosition(started_at=last["started_at"], session_id=last["session_id"]), where,
            key=runtime.session_keys[0])
    return session_history.SessionPage(items=[session_history.summary(row) for row in rows], next_cursor=next_cursor)


@router.get("/v1/sessions/{session_id}", response_model=SessionView, response_model_exclude_none=False,
            summary="Read a session", responses=documented(401, 403, 404, 422, 429, 503))
async def get_session(request: Request, session_id: SessionId,
                      tenant: TenantContext = Depends(require_tenant)) -> SessionView:
    runtime = runtime_of(request)
    database = database_of(request)
    row, erased = None, False
    if database is not None:
        try:
            async with database.connection() as conn:
                row = await session_records.one(conn, tenant=tenant.name, session_id=session_id)
                if row is None:
                    erased = await session_erasures.was_erased(conn, tenant=tenant.name, session_id=session_id)
        except (SQLAlchemyError, OSError) as error:  # the live view needs no database: answer from the workers
            log.warning("the call history did not answer; reading the session from its workers",
                        error_type=type(error).__name__)
    if erased:
        raise _not_found()
    ref = session_ids.decode(session_id, tenant=tenant.name, keys=runtime.session_keys)
    if row is not None and (row["status"] == "ended" or ref is None):
        return _view_of_record(row, ref)
    if ref is None:
        raise _not_found()
    located = await runtime.locator.locate(tenant.name, session_id, ref)
    if not located:
        if row is not None:  # its worker is gone and the end is not recorded yet
            return _view_of_record(row, ref)
        raise _not_found()
    state = located[0].state
    if row is not None and state.phase == "ended":  # ended, not yet recorded: its report is fetched now, not later
        reports = getattr(request.app.state, "call_reports", None)  # gateway/call_reports.py, when it runs
        if reports is not None:
            reports.session_ended_soon(tenant.name, session_id)
    return SessionView(session_id=session_id, agent=state.agent, region=state.region, room=state.room,
                       phase=state.phase, status="live" if row is None or row["status"] == "live" else "ended",
                       channel=row["channel"] if row is not None else "web", started_at=state.started_at,
                       ended_at=state.ended_at, end_reason=state.end_reason,
                       recovered=any(x.state.recovery for x in located), expires_at=_expiry(ref, state.started_at))


def _view_of_record(row: dict[str, Any], ref: session_ids.SessionRef | None) -> SessionView:
    report = session_history.report_of(row)
    return SessionView(session_id=row["session_id"], agent=row["agent"], region=row["region"], room=row["room"],
                       phase="ended" if row["status"] == "ended" else "active", status=row["status"],
                       channel=row["channel"], started_at=row["started_at"], ended_at=row["ended_at"],
                       end_reason=row["end_reason"], duration_ms=row["duration_ms"], cost_micros=row["cost_micros"],
                       recovered=bool(report and report.recoveries), expires_at=_expiry(ref, row["started_at"]),
                       report=report, transcript=session_history.transcript_of(row))


@router.delete("/v1/sessions/{session_id}", status_code=204,
               summary="End a session (the room closes) and erase its record and transcript",
               responses=documented(401, 403, 404, 422, 429, 503))
async def delete_session(request: Request, session_id: SessionId,
                         tenant: TenantContext = Depends(require_tenant)) -> Response:
    runtime = runtime_of(request)
    database = database_of(request)
    ref = session_ids.decode(session_id, tenant=tenant.name, keys=runtime.session_keys)
    erased = False
    if database is not None:
        # Erase first, tombstone with it: the report of the call ended below finds the tombstone and is dropped.
        forget_after = (datetime.fromtimestamp(ref.expires_at, tz=timezone.utc) if ref is not None
                        else datetime.now(timezone.utc)) + ERASE_MEMORY
        forget_after = max(forget_after, datetime.now(timezone.utc) + ERASE_MEMORY)
        with _database_answers(runtime):
            async with database.transaction() as conn:
                gone = await session_records.erase(conn, tenant=tenant.name, session_id=session_id)
                erased = gone is not None
                if erased or ref is not None:
                    await session_erasures.remember(conn, tenant=tenant.name, session_id=session_id,
                                                    forget_after=forget_after)
                if gone is not None and gone["status"] == "live":
                    await _count_erased_call(runtime, conn, tenant.name, gone)
        if erased:
            log.info("session record erased", session_id=session_id, tenant=tenant.name)
    if ref is None:
        if erased:
            return Response(status_code=204)
        raise _not_found()
    located = await runtime.locator.locate(tenant.name, session_id, ref)
    for found in located:
        if found.state.phase != "ended":
            await runtime.worker_client.end_session(found.worker.ip or "", session_id)
    if located:
        await runtime.close_room(ref.region, located[0].state.room)
    if located or erased:
        return Response(status_code=204)
    raise _not_found()


def _ref(runtime: GatewayRuntime, tenant: TenantContext, session_id: str) -> session_ids.SessionRef:
    ref = session_ids.decode(session_id, tenant=tenant.name, keys=runtime.session_keys)
    if ref is None:
        raise _not_found()
    return ref


async def _count_erased_call(runtime: GatewayRuntime, conn: Any, tenant: str, gone: dict[str, Any]) -> None:
    """A call erased while live never reaches the report ingestion (its late report is dropped), so its minutes
    are counted here, in the erasing transaction: erasing calls must not be a way around usage and the monthly
    limits. Its provider units went with the report; the platform's minutes are what the gateway knows."""
    now = datetime.now(timezone.utc)
    call_ms = max(0, int((now - gone["started_at"]).total_seconds() * 1000))
    prices = getattr(runtime.settings, "prices", None) or PriceList()
    await usage.add_call(conn, tenant=tenant, agent=gone["agent"], day=now.date(), call_ms=call_ms,
                         usage=CallUsage(), cost_micros=prices.cost_micros(CallUsage(), call_ms))


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
