"""`/v1/agents`: a tenant lists, reads, creates, changes and deletes its own VoiceAgents.

Every path is built from the authenticated tenant's namespace, never from the request, so one tenant's key
reaches no other tenant's agents: a name that exists only elsewhere is simply 404 here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from pydantic import Field

from voxfleet.api.model_base import DNS_LABEL, ApiModel
from voxfleet.api.outbound import OutboundPolicy
from voxfleet.api.spec_urls import url_refusals
from voxfleet.api.voiceagent import VoiceAgentStatus
from voxfleet.gateway import agent_writes
from voxfleet.gateway.agent_writes import AgentSpecInput
from voxfleet.gateway.api_errors import ApiError, documented
from voxfleet.gateway.openapi_links import AFTER_AGENT_WRITE
from voxfleet.gateway.runtime import GatewayRuntime, runtime_of
from voxfleet.gateway.secret_references import check_secret_references
from voxfleet.gateway.tenant_auth import TenantContext, require_tenant
from voxfleet.kube.errors import Invalid, KubeApiError, NotFound

AgentName = Annotated[str, Path(min_length=1, max_length=63, pattern=DNS_LABEL,
                                description="VoiceAgent name (a DNS label).")]


class AgentView(ApiModel):
    """A VoiceAgent as its tenant sees it: the spec, and the status the operator reports per region."""

    name: str
    spec: dict[str, Any] = Field(description="The VoiceAgent spec, defaults filled in by the cluster.")
    status: VoiceAgentStatus = Field(default_factory=VoiceAgentStatus,
                                     description="Per-region workers, sessions and free slots; conditions.")
    ready: bool = Field(description="The operator reports the agent Ready in all its regions.")
    generation: int = Field(default=0, description="Spec generation; status.observedGeneration catches up.")
    created_at: datetime | None = None


class AgentList(ApiModel):
    items: list[AgentView]


router = APIRouter(prefix="/v1/agents", tags=["agents"],
                   responses=documented(401, 403, 404, 409, 413, 422, 429, 502, 503))


def _view(obj: dict[str, Any]) -> AgentView:
    meta = obj.get("metadata") or {}
    try:
        status = VoiceAgentStatus.model_validate(obj.get("status") or {})
    except ValueError:
        status = VoiceAgentStatus()  # an operator newer than this gateway: show the spec anyway
    ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions)
    return AgentView(name=meta.get("name", ""), spec=obj.get("spec") or {}, status=status, ready=ready,
                     generation=int(meta.get("generation") or 0), created_at=meta.get("creationTimestamp"))


@router.get("", response_model=AgentList, summary="List the tenant's agents")
async def list_agents(request: Request, tenant: TenantContext = Depends(require_tenant)) -> AgentList:
    runtime = runtime_of(request)
    try:
        listing = await runtime.kube.list("VoiceAgent", tenant.namespace)
    except NotFound:  # the namespace or the CRD is not there yet: no agents
        return AgentList(items=[])
    except KubeApiError as error:
        raise agent_writes.apiserver_refusal(error) from None
    items = sorted(listing.get("items") or [], key=lambda o: o["metadata"]["name"])
    return AgentList(items=[_view(obj) for obj in items])


@router.get("/{agent}", response_model=AgentView, summary="Read one agent with its status per region")
async def get_agent(request: Request, agent: AgentName,
                    tenant: TenantContext = Depends(require_tenant)) -> AgentView:
    return _view(await _read(request, tenant, agent))


@router.put("/{agent}", response_model=AgentView, summary="Create or replace an agent's spec",
            responses={200: {"links": AFTER_AGENT_WRITE},
                       201: {"model": AgentView, "description": "Created.", "links": AFTER_AGENT_WRITE}})
async def put_agent(request: Request, response: Response, agent: AgentName, spec: AgentSpecInput,
                    tenant: TenantContext = Depends(require_tenant)) -> AgentView:
    body = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    existed = await _exists(request, tenant, agent)
    view = await _apply(request, tenant, agent, body)
    if not existed:
        response.status_code = 201
    return view


@router.patch("/{agent}", response_model=AgentView, summary="Change part of an agent's spec (JSON merge patch)")
async def patch_agent(request: Request, agent: AgentName,
                      patch: Annotated[dict[str, Any], Body(description="RFC 7386 merge patch of the spec.")],
                      tenant: TenantContext = Depends(require_tenant)) -> AgentView:
    current = await _read(request, tenant, agent)
    merged = agent_writes.merge_patch(agent_writes.writable_part(current.get("spec") or {}), patch)
    return await _apply(request, tenant, agent, merged,
                        resource_version=current["metadata"].get("resourceVersion"))


@router.delete("/{agent}", status_code=204, summary="Delete an agent (its workers drain and go away)")
async def delete_agent(request: Request, agent: AgentName,
                       tenant: TenantContext = Depends(require_tenant)) -> Response:
    try:
        deleted = await runtime_of(request).kube.delete("VoiceAgent", agent, tenant.namespace)
    except KubeApiError as error:
        raise agent_writes.apiserver_refusal(error) from None
    if deleted is None:
        raise _not_found(agent)
    return Response(status_code=204)


async def _read(request: Request, tenant: TenantContext, agent: str) -> dict[str, Any]:
    try:
        return await runtime_of(request).kube.get("VoiceAgent", agent, tenant.namespace)
    except NotFound:
        raise _not_found(agent) from None
    except KubeApiError as error:
        raise agent_writes.apiserver_refusal(error) from None


async def _exists(request: Request, tenant: TenantContext, agent: str) -> bool:
    try:
        await _read(request, tenant, agent)
        return True
    except ApiError as error:
        if error.status == 404:
            return False
        raise


async def _apply(request: Request, tenant: TenantContext, agent: str, body: dict[str, Any],
                 resource_version: str | None = None) -> AgentView:
    runtime = runtime_of(request)
    # Costly (RE2 budget, schema meta-validation): in the checking process, cached by content.
    wire, parsed, cross_field_problems = await runtime.spec_checker.check(body, owner=tenant.name)
    if parsed is not None:
        _refuse_urls(parsed, OutboundPolicy.from_settings(runtime.settings))
        # only the tenant's own secrets (PUT /v1/secrets), holding the named keys
        await check_secret_references(runtime.kube, tenant.namespace, tenant.name, parsed,
                                      runtime.settings.retry_after_seconds)
    manifest = agent_writes.apply_body(tenant, agent, wire)
    if resource_version:  # PATCH: apply only onto the version the patch was merged into
        manifest["metadata"]["resourceVersion"] = resource_version
    try:
        if cross_field_problems:
            await _refuse_cross_field(runtime, manifest, cross_field_problems)
        listing = await runtime.kube.list("VoiceAgent", tenant.namespace)
        agent_writes.check_tenant_limits(tenant, parsed, agent, listing.get("items") or [])
        applied = await runtime.kube.apply(manifest, field_manager=agent_writes.FIELD_MANAGER)
    except NotFound:
        raise ApiError(503, "tenant_not_ready", f"The tenant's namespace {tenant.namespace!r} does not exist"
                                                " yet; try again shortly.",
                       headers={"Retry-After": str(runtime.settings.retry_after_seconds)}) from None
    except KubeApiError as error:
        raise agent_writes.apiserver_refusal(error) from None
    return _view(applied)


async def _refuse_cross_field(runtime: GatewayRuntime, manifest: dict[str, Any],
                              problems: list[dict[str, Any]]) -> None:
    """The CRD's schema and CEL rules name the exact field of a cross-field problem: prefer the apiserver's
    paths (a dry-run create: server-side apply answers 500 to duplicate list-map keys), and fall back to the
    gateway's own findings when the apiserver does not refuse."""
    try:
        candidate = {**manifest, "metadata": {k: v for k, v in manifest["metadata"].items() if k != "resourceVersion"}}
        await runtime.kube.create(candidate, dry_run=True)
    except Invalid as error:
        raise agent_writes.apiserver_refusal(error) from None
    raise ApiError(422, "invalid_agent", "The agent spec is not valid; see details.", details=problems)


def _refuse_urls(spec, policy: OutboundPolicy) -> None:
    """422 for URLs the outbound policy refuses without DNS (IP literals in denied ranges, in any spelling)."""
    refusals = url_refusals(spec, policy)
    if refusals:
        raise ApiError(422, "url_not_allowed", "The platform's outbound policy refuses URLs in the spec; see details.",
                       details=[{"field": r.field, "message": r.message, "reason": "Forbidden"} for r in refusals])


def _not_found(agent: str) -> ApiError:
    return ApiError(404, "agent_not_found", f"This tenant has no agent named {agent!r}.")
