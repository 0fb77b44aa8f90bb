"""`/v1/agents`: a tenant lists, reads, creates, changes and deletes its own VoiceAgents.

Every path is built from the authenticated tenant's namespace, never from the request, so one tenant's key
reaches no other tenant's agents: a name that exists only elsewhere is simply 404 here.

No silent lost updates: every read answers the agent's ETag (header, and `etag` in each view), and PUT, PATCH
and DELETE take `If-Match`: the write goes ahead only onto the spec version the client read, else 412. The
check and the write are one step on the apiserver (the write carries the resourceVersion that was checked; when
the object moved meanwhile, only a status update by the operator, the check runs again). `If-None-Match: *` on
PUT creates only (412 when the agent exists): a create, not an apply, so two racing creates make one agent
(agent_writes.create_as_applied). Without the headers, writes are last-writer-wins as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from voxfleet.api.model_base import DNS_LABEL, ApiModel
from voxfleet.api.outbound import OutboundPolicy
from voxfleet.api.spec_urls import url_refusals
from voxfleet.api.voiceagent import VoiceAgentSpec, VoiceAgentStatus
from voxfleet.gateway import agent_writes, entity_tags
from voxfleet.gateway.agent_writes import AgentSpecInput
from voxfleet.gateway.api_errors import ApiError, documented
from voxfleet.gateway.entity_tags import Condition, MalformedCondition
from voxfleet.gateway.openapi_links import AFTER_AGENT_WRITE
from voxfleet.gateway.resource_locations import created
from voxfleet.gateway.runtime import GatewayRuntime, runtime_of
from voxfleet.gateway.secret_references import check_secret_references
from voxfleet.gateway.tenant_auth import TenantContext, require_tenant
from voxfleet.kube.errors import Conflict, Invalid, KubeApiError, NotFound

AgentName = Annotated[str, Path(min_length=1, max_length=63, pattern=DNS_LABEL,
                                description="VoiceAgent name (a DNS label).")]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=4096,
                                       description="Write only if the agent's current ETag is one of these (or"
                                                   " `*`: only if it exists); else 412.")]
IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match", max_length=4096,
                                           description="`*`: create only (412 if the agent exists).")]
IfNoneMatchRead = Annotated[str | None, Header(alias="If-None-Match", max_length=4096,
                                               description="304 Not Modified when the agent's ETag is one of"
                                                           " these.")]

WRITE_ATTEMPTS = 4  # an agent's status moves often (the operator's reports); its spec, rarely


class AgentView(ApiModel):
    """A VoiceAgent as its tenant sees it: the spec, and the status the operator reports per region."""

    name: str
    spec: VoiceAgentSpec = Field(description="The VoiceAgent spec, defaults filled in by the cluster.")
    status: VoiceAgentStatus = Field(default_factory=VoiceAgentStatus,
                                     description="Per-region workers, sessions and free slots; conditions.")
    ready: bool = Field(description="The operator reports the agent Ready in all its regions.")
    generation: int = Field(default=0, description="Spec generation; status.observedGeneration catches up.")
    created_at: datetime | None = None
    etag: str = Field(description="The spec version's ETag (as the ETag header of GET): send it in If-Match to"
                                  " change or delete exactly this version.")


class AgentList(ApiModel):
    items: list[AgentView]


router = APIRouter(prefix="/v1/agents", tags=["agents"],
                   responses=documented(401, 403, 404, 409, 413, 422, 429, 502, 503))

_ETAG_HEADER = {"ETag": {"description": "The agent's spec version; send it back in If-Match.",
                         "schema": {"type": "string"}}}
_WRITE_ANSWERS = documented(400, 412)


def _view(obj: dict[str, Any]) -> dict[str, Any]:
    """The AgentView of a stored object, as JSON. The spec is passed through as the cluster stored it (it was
    checked against VoiceAgentSpec when written; parsing it again per read would compile its patterns on the
    event loop): the model types it in the OpenAPI document, the route answers this JSON directly."""
    meta = obj.get("metadata") or {}
    try:
        status = VoiceAgentStatus.model_validate(obj.get("status") or {})
    except ValueError:
        status = VoiceAgentStatus()  # an operator newer than this gateway: show the spec anyway
    ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions)
    created_at = meta.get("creationTimestamp")
    rest = AgentView.model_construct(
        name=meta.get("name", ""), status=status, ready=ready, generation=int(meta.get("generation") or 0),
        created_at=datetime.fromisoformat(created_at) if isinstance(created_at, str) else None,
        etag=entity_tags.spec_etag(obj))
    return {"name": rest.name, "spec": obj.get("spec") or {},
            **rest.model_dump(mode="json", by_alias=True, exclude={"name", "spec"})}


@router.get("", response_model=AgentList, summary="List the tenant's agents")
async def list_agents(request: Request, tenant: TenantContext = Depends(require_tenant)) -> JSONResponse:
    runtime = runtime_of(request)
    try:
        listing = await runtime.kube.list("VoiceAgent", tenant.namespace)
    except NotFound:  # the namespace or the CRD is not there yet: no agents
        return JSONResponse({"items": []})
    except KubeApiError as error:
        raise agent_writes.apiserver_refusal(error) from None
    items = sorted(listing.get("items") or [], key=lambda o: o["metadata"]["name"])
    return JSONResponse({"items": [_view(obj) for obj in items]})


@router.get("/{agent}", response_model=AgentView, summary="Read one agent with its status per region",
            responses={200: {"headers": _ETAG_HEADER},
                       304: {"description": "Not modified: the agent's ETag is one sent in If-None-Match."},
                       **documented(400)})
async def get_agent(request: Request, agent: AgentName, if_none_match: IfNoneMatchRead = None,
                    tenant: TenantContext = Depends(require_tenant)) -> Response:
    condition = _condition("If-None-Match", if_none_match)
    obj = await _read(request, tenant, agent)
    etag = entity_tags.spec_etag(obj)
    if condition is not None and condition.matches_weakly(etag):
        return Response(status_code=304, headers={"ETag": etag})
    return JSONResponse(_view(obj), headers={"ETag": etag})


@router.put("/{agent}", response_model=AgentView, summary="Create or replace an agent's spec",
            responses={200: {"links": AFTER_AGENT_WRITE, "headers": _ETAG_HEADER},
                       201: {"model": AgentView, "description": "Created.", "links": AFTER_AGENT_WRITE,
                             "headers": {**_ETAG_HEADER, "Location": {"description": "The agent's URL.",
                                                                      "schema": {"type": "string"}}}},
                       **_WRITE_ANSWERS})
async def put_agent(request: Request, agent: AgentName, spec: AgentSpecInput, if_match: IfMatch = None,
                    if_none_match: IfNoneMatch = None,
                    tenant: TenantContext = Depends(require_tenant)) -> JSONResponse:
    must_match = _condition("If-Match", if_match)
    must_not_match = _condition("If-None-Match", if_none_match)
    body = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)

    async def write(current: dict[str, Any] | None) -> dict[str, Any]:
        # Conditional: onto exactly the version checked (a Conflict when it moved), or only as a new agent (a
        # Conflict when one appeared meanwhile: then the check runs again and answers 412). Else last writer wins.
        version = (current or {}).get("metadata", {}).get("resourceVersion") if must_match else None
        create_only = current is None and must_not_match is not None and must_not_match.any
        return await _apply(request, tenant, agent, body, resource_version=version, create_only=create_only)

    current, applied = await _conditional_write(request, tenant, agent, must_match, must_not_match, write,
                                                creates=True)
    view, etag = _view(applied), entity_tags.spec_etag(applied)
    if current is None:
        return created(request, view, "v1", "agents", agent, headers={"ETag": etag})
    return JSONResponse(view, headers={"ETag": etag})


@router.patch("/{agent}", response_model=AgentView, summary="Change part of an agent's spec (JSON merge patch)",
              responses={200: {"headers": _ETAG_HEADER}, **_WRITE_ANSWERS})
async def patch_agent(request: Request, agent: AgentName,
                      patch: Annotated[dict[str, Any], Body(description="RFC 7386 merge patch of the spec.")],
                      if_match: IfMatch = None,
                      tenant: TenantContext = Depends(require_tenant)) -> JSONResponse:
    must_match = _condition("If-Match", if_match)

    async def write(current: dict[str, Any] | None) -> dict[str, Any]:
        if current is None:
            raise _not_found(agent)
        # merged onto the version read, and applied only onto it: a change meanwhile is merged again
        merged = agent_writes.merge_patch(agent_writes.writable_part(current.get("spec") or {}), patch)
        return await _apply(request, tenant, agent, merged,
                            resource_version=current["metadata"].get("resourceVersion"))

    _, applied = await _conditional_write(request, tenant, agent, must_match, None, write)
    return JSONResponse(_view(applied), headers={"ETag": entity_tags.spec_etag(applied)})


@router.delete("/{agent}", status_code=204, summary="Delete an agent (its workers drain and go away)",
               responses=_WRITE_ANSWERS)
async def delete_agent(request: Request, agent: AgentName, if_match: IfMatch = None,
                       tenant: TenantContext = Depends(require_tenant)) -> Response:
    must_match = _condition("If-Match", if_match)
    kube = runtime_of(request).kube

    async def delete(current: dict[str, Any] | None) -> dict[str, Any]:
        if current is None:
            raise _not_found(agent)
        meta = current["metadata"]  # only the version checked: a Conflict when it moved since
        return await _delete(kube, tenant, agent, {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]})

    if must_match is None:  # unconditional: one call, as before
        await _delete(kube, tenant, agent, None)
    else:
        await _conditional_write(request, tenant, agent, must_match, None, delete)
    return Response(status_code=204)


async def _delete(kube, tenant: TenantContext, agent: str, preconditions: dict[str, str] | None) -> dict[str, Any]:
    try:
        deleted = await kube.delete("VoiceAgent", agent, tenant.namespace, preconditions=preconditions)
    except KubeApiError as error:
        if isinstance(error, Conflict) and preconditions:
            raise  # the version moved since it was checked: _conditional_write checks again
        raise agent_writes.apiserver_refusal(error) from None
    if deleted is None:  # gone (meanwhile)
        raise _not_found(agent)
    return deleted


def _condition(header: str, value: str | None) -> Condition | None:
    try:
        return entity_tags.parse_condition(value)
    except MalformedCondition as error:
        raise ApiError(400, "invalid_precondition", f"The {header} header is not valid: {error}.",
                       details=[{"field": f"header.{header}", "message": str(error), "reason": "Malformed"}]
                       ) from None


async def _conditional_write(request: Request, tenant: TenantContext, agent: str, must_match: Condition | None,
                             must_not_match: Condition | None,
                             write: Callable[[dict[str, Any] | None], Awaitable[dict[str, Any]]], *,
                             creates: bool = False) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Read the agent, check the preconditions against its ETag (412 when one fails), then write onto the version
    read. A missing agent is a 404 unless the write `creates` it (PUT: then If-Match cannot hold, 412). A Conflict means the object moved between the read and the write (a status update, or an edit): read
    and check again, a few times; the edit then fails its check, a status update does not."""
    for _ in range(WRITE_ATTEMPTS):
        current = await _read_or_none(request, tenant, agent)
        if current is None and not creates:
            # RFC 9110 13.2.1: preconditions are ignored when the answer without them would not be a 2xx: 404
            raise _not_found(agent)
        etag = entity_tags.spec_etag(current) if current is not None else None
        if must_match is not None and not must_match.matches_strongly(etag):
            raise _precondition_failed(agent, "If-Match", etag)
        if must_not_match is not None and must_not_match.matches_weakly(etag):
            raise _precondition_failed(agent, "If-None-Match", etag)
        try:
            return current, await write(current)
        except Conflict:
            continue
        except ApiError as error:
            if error.code != "conflict":
                raise
    raise ApiError(409, "conflict", "The agent kept changing while this request ran; read it again and retry.")


def _precondition_failed(agent: str, header: str, etag: str | None) -> ApiError:
    if etag is None:
        message = f"This tenant has no agent named {agent!r}, so {header} cannot hold."
    elif header == "If-Match":
        message = (f"The agent {agent!r} changed since you read it (its ETag is now {etag}); read it again, apply"
                   " your change to what it is now, and send the new ETag in If-Match.")
    else:
        message = f"The agent {agent!r} exists already (ETag {etag}); If-None-Match: * only creates."
    return ApiError(412, "precondition_failed", message,
                    details=[{"field": f"header.{header}", "message": "precondition does not hold",
                              "reason": "PreconditionFailed"}],
                    extensions={"currentEtag": etag})


async def _read(request: Request, tenant: TenantContext, agent: str) -> dict[str, Any]:
    try:
        return await runtime_of(request).kube.get("VoiceAgent", agent, tenant.namespace)
    except NotFound:
        raise _not_found(agent) from None
    except KubeApiError as error:
        raise agent_writes.apiserver_refusal(error) from None


async def _read_or_none(request: Request, tenant: TenantContext, agent: str) -> dict[str, Any] | None:
    try:
        return await _read(request, tenant, agent)
    except ApiError as error:
        if error.status == 404:
            return None
        raise


async def _apply(request: Request, tenant: TenantContext, agent: str, body: dict[str, Any],
                 resource_version: str | None = None, create_only: bool = False) -> dict[str, Any]:
    """Check and server-side apply the spec; the applied object. With resource_version, only onto that version
    (kube Conflict when the object moved since); create_only: only if it does not exist (kube Conflict if it
    does)."""
    runtime = runtime_of(request)
    # Costly (RE2 budget, schema meta-validation): in the checking process, cached by content.
    wire, parsed, cross_field_problems = await runtime.spec_checker.check(body, owner=tenant.name)
    if parsed is not None:
        _refuse_urls(parsed, OutboundPolicy.from_settings(runtime.settings))
        # only the tenant's own secrets (PUT /v1/secrets), holding the named keys
        await check_secret_references(runtime.kube, tenant.namespace, tenant.name, parsed,
                                      runtime.settings.retry_after_seconds)
    manifest = agent_writes.apply_body(tenant, agent, wire)
    if resource_version:  # apply only onto the version the patch was merged into, or If-Match checked
        manifest["metadata"]["resourceVersion"] = resource_version
    try:
        if cross_field_problems:
            await _refuse_cross_field(runtime, manifest, cross_field_problems)
        listing = await runtime.kube.list("VoiceAgent", tenant.namespace)
        agent_writes.check_tenant_limits(tenant, parsed, agent, listing.get("items") or [])
        if create_only:
            applied = await agent_writes.create_as_applied(runtime.kube, manifest)
        else:
            applied = await runtime.kube.apply(manifest, field_manager=agent_writes.FIELD_MANAGER)
    except NotFound:
        raise ApiError(503, "tenant_not_ready", f"The tenant's namespace {tenant.namespace!r} does not exist"
                                                " yet; try again shortly.",
                       headers={"Retry-After": str(runtime.settings.retry_after_seconds)}) from None
    except Conflict:
        raise
    except KubeApiError as error:
        raise agent_writes.apiserver_refusal(error) from None
    return applied


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
