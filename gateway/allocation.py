"""Allocating a session: pick candidate workers, claim a slot at one (409 -> the next, a bounded number of
times), hold the tenant's quota, and mint the tokens for the region the slot is in.

The same claim loop serves recovery: a session whose worker died is dispatched, with ``recovery: true`` and
its own session id and room, to another worker of the agent; a worker of another region joins the same room on
the room's LiveKit (the dispatch carries that LiveKit's URL and a token minted for it), not its own.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import structlog
from opentelemetry import trace

from voxfleet.api.wire import DispatchRequest, DispatchResponse
from voxfleet.api import room_names
from voxfleet.gateway import placement, session_ids
from voxfleet.gateway.agent_directory import AgentInfo
from voxfleet.gateway.api_errors import ApiError
from voxfleet.gateway.livekit_tokens import LiveKitTokens, MintedToken
from voxfleet.gateway.metrics import GatewayMetrics
from voxfleet.gateway.session_quota import SessionQuota
from voxfleet.gateway.settings import GatewaySettings
from voxfleet.gateway.worker_client import DispatchOutcome, WorkerClient
from voxfleet.gateway.worker_registry import Worker, WorkerRegistry
from voxfleet.telemetry.tracing import traceparent_headers

log = structlog.get_logger(__name__)

SESSION_GRACE_SECONDS = 120  # session ids and agent tokens outlive maxSessionSeconds by this much
QUOTA_ROUNDS = 4  # claim-then-count attempts before 429 (see session_quota.py)
QUOTA_BACKOFF_SECONDS = 0.02  # random back-off before the second attempt; doubles after each


@dataclass(frozen=True)
class Allocation:
    session_id: str
    room: str
    region: str
    livekit_url: str
    worker: Worker
    response: DispatchResponse
    expires_at: datetime
    caller_identity: str | None = None
    caller_token: MintedToken | None = None


@dataclass(frozen=True)
class Claimed:
    worker: Worker
    request: DispatchRequest
    response: DispatchResponse


class Allocator:
    def __init__(self, settings: GatewaySettings, registry: WorkerRegistry, client: WorkerClient,
                 tokens: LiveKitTokens, quota: SessionQuota, metrics: GatewayMetrics, session_keys: list[bytes],
                 tracer: trace.Tracer):
        self.settings = settings
        self.registry = registry
        self.client = client
        self.tokens = tokens
        self.quota = quota
        self.metrics = metrics
        self.session_keys = session_keys
        self.tracer = tracer

    # --- new sessions ---------------------------------------------------------------------------------------

    def regions_for(self, tenant_allowed: Sequence[str], agent: AgentInfo, *, preference: str | None,
                    caller_region: str | None) -> list[str]:
        usable = set(tenant_allowed) & set(self.settings.regions)
        return placement.region_order(agent.regions, usable=usable, preference=preference,
                                      caller_region=caller_region, default_origin=self.settings.default_caller_region,
                                      latency_ms=self.settings.latency_ms)

    async def allocate(self, *, tenant: str, namespace: str, quota_limit: int, agent: AgentInfo,
                       regions: list[str], caller_identity: str | None, caller_name: str,
                       metadata: dict[str, Any], room_name: Callable[[str], str] | None = None,
                       mint_caller_token: bool = True, eval_mode: bool = False) -> Allocation:
        started = time.perf_counter()
        labels = {"tenant": tenant, "agent": agent.name}
        with self.tracer.start_as_current_span("gateway.allocate_session", attributes={
                "voxfleet.tenant": tenant, "voxfleet.agent": agent.name}) as span:
            if quota_limit <= 0:
                self._count(labels, "", "quota", started)
                raise self._over_quota(quota_limit)
            lifetime = agent.spec.limits.max_session_seconds + SESSION_GRACE_SECONDS
            first_nonce = session_ids.new_nonce()
            # Rooms started outside the API (SIP) have no caller identity yet; API callers get one.
            identity = caller_identity or (f"caller-{first_nonce.hex()}" if mint_caller_token else None)

            def builder(nonce: bytes) -> Callable[[Worker], DispatchRequest]:
                def build(worker: Worker) -> DispatchRequest:
                    ref = session_ids.SessionRef(region=worker.region, worker_ip=worker.ip or "", nonce=nonce,
                                                 expires_at=int(time.time()) + lifetime)
                    session_id = session_ids.encode(ref, tenant=tenant, key=self.session_keys[0])
                    room = room_name(session_id) if room_name else room_names.room_for_session(
                        tenant, agent.name, session_id)
                    return self._dispatch_request(tenant, agent, worker, session_id, room, nonce.hex(),
                                                  caller_identity=identity, metadata=metadata, recovery=False,
                                                  eval_mode=eval_mode)
                return build

            for attempt in range(QUOTA_ROUNDS):
                nonce = first_nonce if attempt == 0 else session_ids.new_nonce()  # a released id stays ended
                claimed = await self.claim(self._candidates(tenant, agent.name, regions), builder(nonce))
                if claimed is None:
                    self._count(labels, regions[0] if regions else "", "no_capacity", started)
                    span.set_attribute("voxfleet.result", "no_capacity")
                    raise ApiError(503, "no_capacity", "No warm worker of this agent has a free slot in the usable"
                                                       " regions right now; retry after Retry-After seconds.",
                                   headers={"Retry-After": str(self.settings.retry_after_seconds)})
                worker, request = claimed.worker, claimed.request
                if not self.quota.needs_count(tenant, namespace, quota_limit):
                    break
                total = await self.quota.count(tenant, claimed=worker, claimed_active=claimed.response.load.active)
                if total <= quota_limit:
                    break
                await self.client.end_session(worker.ip or "", request.session_id)
                if attempt + 1 == QUOTA_ROUNDS:
                    self._count(labels, worker.region, "quota", started)
                    span.set_attribute("voxfleet.result", "quota")
                    raise self._over_quota(quota_limit)
                # Contenders at the limit all release; backing off at random lets some of them through next time.
                await asyncio.sleep(random.uniform(0, QUOTA_BACKOFF_SECONDS * 2 ** attempt))
            caller_token = None
            if mint_caller_token:
                caller_token = self.tokens.caller(worker.region, room=request.room, identity=identity or "",
                                                  name=caller_name or identity or "",
                                                  ttl_seconds=self.settings.caller_token_ttl_seconds)
            self._count(labels, worker.region, "ok", started)
            span.set_attribute("voxfleet.region", worker.region)
            span.set_attribute("voxfleet.worker", worker.name)
            ref = session_ids.decode(request.session_id, tenant=tenant, keys=self.session_keys)
            expires = datetime.fromtimestamp(ref.expires_at if ref else 0, tz=timezone.utc)
            return Allocation(session_id=request.session_id, room=request.room, region=worker.region,
                              livekit_url=self.tokens.url(worker.region), worker=worker, response=claimed.response,
                              expires_at=expires, caller_identity=identity, caller_token=caller_token)

    def _over_quota(self, limit: int) -> ApiError:
        return ApiError(429, "quota_exceeded", f"The tenant already has its maximum of {limit} concurrent sessions;"
                                               " end one or retry after Retry-After seconds.",
                        headers={"Retry-After": str(self.settings.retry_after_seconds)})

    def _count(self, labels: dict[str, str], region: str, result: str, started: float) -> None:
        self.metrics.allocations.labels(labels["tenant"], labels["agent"], region, result).inc()
        self.metrics.allocation_seconds.labels(labels["tenant"], labels["agent"], region, result).observe(
            time.perf_counter() - started)

    def _candidates(self, tenant: str, agent: str, regions: list[str]) -> list[Worker]:
        ordered: list[Worker] = []
        for region in regions:
            ordered += placement.worker_order(self.registry.ready_workers(tenant, agent, region),
                                              self.registry.free_hint)
        return ordered

    def _dispatch_request(self, tenant: str, agent: AgentInfo, worker: Worker, session_id: str, room: str,
                          nonce_hex: str, *, caller_identity: str | None, metadata: dict[str, Any],
                          recovery: bool, eval_mode: bool = False,
                          livekit_region: str | None = None) -> DispatchRequest:
        """``livekit_region``: the region whose LiveKit holds the room (default: the worker's own)."""
        livekit_region = livekit_region or worker.region
        identity = room_names.agent_identity(nonce_hex, worker.name)
        token = self.tokens.agent(livekit_region, room=room, identity=identity, session_id=session_id,
                                  ttl_seconds=agent.spec.limits.max_session_seconds + SESSION_GRACE_SECONDS,
                                  eval_mode=eval_mode)
        return DispatchRequest(session_id=session_id, tenant=tenant, agent=agent.name, region=worker.region,
                               room=room, livekit_url=self.tokens.url(livekit_region), livekit_token=token.jwt,
                               agent_identity=identity, caller_identity=caller_identity, metadata=metadata,
                               recovery=recovery, eval_mode=eval_mode)

    # --- the claim loop -------------------------------------------------------------------------------------

    async def claim(self, candidates: list[Worker], build: Callable[[Worker], DispatchRequest], *,
                    max_attempts: int | None = None) -> Claimed | None:
        """Try candidates in order until one accepts; at most settings.dispatch_attempts of them (or
        ``max_attempts``)."""
        attempts = 0
        for worker in candidates[: max_attempts or self.settings.dispatch_attempts]:
            attempts += 1
            request = build(worker)
            outcome = await self._dispatch(worker, request)
            if outcome.answer == "accepted" and outcome.response is not None \
                    and outcome.response.session.phase != "ended":
                self.registry.note_load(worker, outcome.response.load)
                self.metrics.dispatch_attempts.labels(worker.region).observe(attempts)
                return Claimed(worker, request, outcome.response)
            if outcome.answer in ("full", "draining", "not_ready"):
                self.registry.note_full(worker)
            log.debug("dispatch refused", pod=worker.name, region=worker.region, answer=outcome.answer,
                      detail=outcome.detail)
        if candidates:
            self.metrics.dispatch_attempts.labels(candidates[0].region).observe(attempts)
        return None

    async def _dispatch(self, worker: Worker, request: DispatchRequest) -> DispatchOutcome:
        started = time.perf_counter()
        with self.tracer.start_as_current_span("gateway.dispatch", kind=trace.SpanKind.CLIENT, attributes={
                "voxfleet.worker": worker.name, "voxfleet.region": worker.region,
                "voxfleet.recovery": request.recovery}) as span:
            # The worker parents the session's spans on this one: the call stays one trace.
            request = request.model_copy(update={"traceparent": traceparent_headers().get("traceparent")})
            outcome = await self.client.dispatch(worker.ip or "", request)
            span.set_attribute("voxfleet.answer", outcome.answer)
        self.metrics.dispatch_seconds.labels(worker.region, outcome.answer).observe(time.perf_counter() - started)
        return outcome

    # --- recovery -------------------------------------------------------------------------------------------

    async def redispatch(self, *, tenant: str, agent: AgentInfo, session_id: str, room: str, nonce_hex: str,
                         livekit_region: str, candidates: list[Worker], caller_identity: str | None,
                         eval_mode: bool = False, max_attempts: int | None = None) -> Claimed | None:
        """Dispatch an existing session (its id and room unchanged) to the first of ``candidates`` that takes
        it, with recovery: true, to join its room on ``livekit_region``'s LiveKit whatever region the worker is
        in; an eval run's session stays one (its new worker records the rest of the call for the eval runner)."""

        def build(worker: Worker) -> DispatchRequest:
            return self._dispatch_request(tenant, agent, worker, session_id, room, nonce_hex,
                                          caller_identity=caller_identity, metadata={}, recovery=True,
                                          eval_mode=eval_mode, livekit_region=livekit_region)

        return await self.claim(candidates, build, max_attempts=max_attempts)
