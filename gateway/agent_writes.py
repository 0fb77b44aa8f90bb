"""What a tenant may write into a VoiceAgent through the gateway, and how it becomes a server-side apply.

The writable part is a subset of VoiceAgentSpec's own fields (never the worker image, env or resources, which
are the platform's), checked against the Tenant's allowed regions and quotas, and applied with the gateway's
field manager. The apiserver then validates again through the CRD (schema and CEL): its refusals come back
as 422 with the field path, like the gateway's own.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import TypeAdapter, ValidationError, create_model

from voxfleet.api import labels
from voxfleet.api.field_problem import field_problem_of
from voxfleet.api.model_base import ApiModel
from voxfleet.api.voiceagent import GROUP, KIND, STORED_SPEC_FOR_ROUTING, VERSION, Region, VoiceAgentSpec
from voxfleet.gateway.api_errors import ApiError, validation_details
from voxfleet.gateway.tenant_auth import TenantContext
from voxfleet.kube.client import KubeClient
from voxfleet.kube.errors import KubeApiError

log = structlog.get_logger(__name__)

FIELD_MANAGER = "voxfleet-gateway"
TENANT_WRITABLE_FIELDS = ("greeting", "system_prompt", "pipeline", "turn_detection", "interruptions", "tools",
                          "intents", "regions", "scaling", "limits", "observability", "reply_filler", "no_match")

# The request body of PUT /v1/agents/{agent}: VoiceAgentSpec's own field definitions, minus the platform's.
AgentSpecInput = create_model(
    "AgentSpecInput",
    __base__=ApiModel,
    __doc__="The parts of a VoiceAgent spec a tenant may set: what the agent says and does, its regions and"
            " scaling. Worker image, env and resources are the platform's and are refused here.",
    **{name: (VoiceAgentSpec.model_fields[name].annotation, VoiceAgentSpec.model_fields[name])
       for name in TENANT_WRITABLE_FIELDS},
)


@dataclass(frozen=True)
class SpecOutcome:
    """checked_spec's answer in a form that crosses a process boundary as JSON (gateway/spec_checker.py)."""

    wire: dict[str, Any] | None = None
    parsed: dict[str, Any] | None = None  # the checked spec with its defaults, as JSON
    problems: tuple[dict[str, Any], ...] = ()
    invalid: tuple[dict[str, Any], ...] | None = None  # field-level problems: 422 at once

    def to_wire(self) -> dict[str, Any]:
        return {"wire": self.wire, "parsed": self.parsed, "problems": list(self.problems),
                "invalid": None if self.invalid is None else list(self.invalid)}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> "SpecOutcome":
        invalid = data.get("invalid")
        return cls(wire=data.get("wire"), parsed=data.get("parsed"), problems=tuple(data.get("problems") or ()),
                   invalid=None if invalid is None else tuple(invalid))

    def result(self) -> tuple[dict[str, Any], VoiceAgentSpec | None, list[dict[str, Any]]]:
        if self.invalid is not None:
            raise _invalid(list(self.invalid))
        assert self.wire is not None
        # Checked already (in the checking process): only the cheap parse again, none of the costly checks.
        parsed = None if self.parsed is None else VoiceAgentSpec.model_validate(self.parsed,
                                                                                 context=STORED_SPEC_FOR_ROUTING)
        return self.wire, parsed, list(self.problems)


def spec_outcome(body: dict[str, Any]) -> SpecOutcome:
    try:
        wire, parsed, problems = checked_spec(body)
    except ApiError as error:
        return SpecOutcome(invalid=tuple(error.details or ()))
    return SpecOutcome(wire=wire, parsed=None if parsed is None else parsed.model_dump(mode="json", by_alias=True),
                       problems=tuple(problems))


def _invalid(details: list[dict[str, Any]]) -> ApiError:
    return ApiError(422, "invalid_agent", "The agent spec is not valid; see details for each field.",
                    details=details)


def _details(error: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as details; a FieldProblem (found by a check over the whole spec) names its own field."""
    errors = list(error.errors())
    details = validation_details(errors)
    for detail, item in zip(details, errors):
        problem = field_problem_of(item)
        if problem is not None:
            detail["field"], detail["message"] = problem.field, problem.message[:500]
            detail.pop("pointer", None)  # pydantic's location was the check's, not the field's
    return details


def checked_spec(body: dict[str, Any]) -> tuple[dict[str, Any], VoiceAgentSpec | None, list[dict[str, Any]]]:
    """The tenant's spec as wire JSON (only what the tenant set), parsed with every default filled in, and the
    cross-field problems pydantic found (tool references, unique names), if any.

    Field-level problems raise 422 at once with one detail per field (paths relative to the spec). Cross-field
    ones are returned so the caller can ask the apiserver (dry run) for its more precise field paths first.
    The budgeted checks over the whole spec (RE2 patterns, tool schemas) raise 422 at once too, naming the
    field: the apiserver has no rule for them. Costly (up to ~0.1 s): the gateway runs it through
    spec_checker, off its event loop.
    """
    try:
        writable = AgentSpecInput.model_validate(body)
    except ValidationError as error:
        raise _invalid(validation_details(list(error.errors()))) from None
    wire = writable.model_dump(mode="json", by_alias=True, exclude_unset=True)
    try:
        return wire, VoiceAgentSpec.model_validate(wire), []
    except ValidationError as error:
        if any(field_problem_of(item) for item in error.errors()):
            raise _invalid(_details(error)) from None
        return wire, None, _details(error)


_REGIONS = TypeAdapter(list[Region])


def _regions_of(agent: dict[str, Any]) -> list[Any]:
    # Only the regions: parsing a whole spec would compile its patterns again, on the event loop.
    try:
        return _REGIONS.validate_python((agent.get("spec") or {}).get("regions") or [])
    except ValidationError:
        return []  # a spec that no longer parses runs no workers


def check_tenant_limits(tenant: TenantContext, spec: VoiceAgentSpec, name: str,
                        existing_agents: list[dict[str, Any]]) -> None:
    """Allowed regions and quotas (403 with the field that breaks them)."""
    allowed = set(tenant.spec.allowed_regions)
    for index, region in enumerate(spec.regions):
        if region.name not in allowed:
            raise ApiError(403, "region_not_allowed",
                           f"Region {region.name!r} is not among the tenant's allowed regions"
                           f" ({', '.join(sorted(allowed))}).",
                           details=[{"field": f"regions[{index}].name", "message": "region not allowed",
                                     "reason": "Forbidden"}])
    quotas = tenant.spec.quotas
    others = [a for a in existing_agents if a["metadata"]["name"] != name]
    is_new = len(others) == len(existing_agents)
    if is_new and len(others) + 1 > quotas.max_agents:
        raise ApiError(403, "quota_exceeded", f"The tenant may have at most {quotas.max_agents} agents; delete one"
                                              " first or ask your platform team for a higher quota.")
    for index, region in enumerate(spec.regions):
        if region.max_workers > quotas.max_workers:
            raise ApiError(403, "quota_exceeded",
                           f"maxWorkers {region.max_workers} is above the tenant's quota of {quotas.max_workers}"
                           " workers.",
                           details=[{"field": f"regions[{index}].maxWorkers", "message": "above quota",
                                     "reason": "Forbidden"}])
    # The warm floor of every agent together must fit the tenant's worker quota.
    floor = sum(region.min_workers for region in spec.regions)
    floor += sum(region.min_workers for agent in others for region in _regions_of(agent))
    if floor > quotas.max_workers:
        raise ApiError(403, "quota_exceeded",
                       f"The agents' minWorkers add up to {floor}, above the tenant's quota of {quotas.max_workers}"
                       " workers; lower minWorkers or ask your platform team for a higher quota.",
                       details=[{"field": "regions", "message": "minWorkers over quota", "reason": "Forbidden"}])


def apply_body(tenant: TenantContext, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": tenant.namespace, "labels": {labels.TENANT: tenant.name}},
        "spec": spec,
    }


async def create_as_applied(kube: KubeClient, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create the VoiceAgent only if it does not exist (kube Conflict if it does), owned as a server-side apply.

    Server-side apply has no create-only precondition, so a create-only PUT (If-None-Match: *) is a POST; its
    field ownership is then an "Update" of the gateway's field manager, which a later apply would not remove
    fields from (the fields a later PUT leaves out would stay). So the entry becomes the manager's "Apply", the
    way `kubectl apply --server-side` takes over what client-side apply wrote: a JSON patch of managedFields,
    tested against the resourceVersion it was computed from, retried a few times if something (the operator's
    finalizer) moved the object meanwhile."""
    created = await kube.create(manifest, field_manager=FIELD_MANAGER)
    meta = manifest["metadata"]
    current = created
    for _ in range(3):
        entries = (current.get("metadata") or {}).get("managedFields") or []
        index = next((i for i, entry in enumerate(entries)
                      if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Update"), None)
        if index is None:
            return current
        try:
            return await kube.patch(KIND, meta["name"], [
                {"op": "test", "path": "/metadata/resourceVersion", "value": current["metadata"]["resourceVersion"]},
                {"op": "replace", "path": f"/metadata/managedFields/{index}/operation", "value": "Apply"},
            ], meta["namespace"], patch_type="json")
        except KubeApiError as error:
            log.warning("create-only agent: taking over its field ownership failed; retrying",
                        agent=meta["name"], namespace=meta["namespace"], status=error.status)
            current = await kube.get(KIND, meta["name"], meta["namespace"])
    return current


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def writable_part(spec: dict[str, Any]) -> dict[str, Any]:
    """The tenant-writable fields of a stored spec (what PATCH merges into)."""
    names = {VoiceAgentSpec.model_fields[f].alias or f for f in TENANT_WRITABLE_FIELDS}
    return {key: value for key, value in spec.items() if key in names}


def apiserver_refusal(error: KubeApiError) -> ApiError:
    """The apiserver's answer to a write, as the gateway's error (422 with field paths for invalid specs)."""
    if error.status == 422:
        details = []
        for cause in error.causes:
            field = str(cause.get("field", ""))
            field = field[len("spec."):] if field.startswith("spec.") else field
            details.append({"field": field, "message": str(cause.get("message", ""))[:1000],
                            "reason": str(cause.get("reason", "FieldValueInvalid"))})
        return ApiError(422, "invalid_agent", "The cluster refused the agent spec; see details for each field.",
                        details=details)
    if error.status == 409:
        return ApiError(409, "conflict", "The agent changed while this request ran; read it again and retry.")
    if error.status == 404:
        return ApiError(404, "agent_not_found", "No such agent.")
    if error.status == 403:
        return ApiError(503, "gateway_forbidden", "The gateway is not allowed to write agents in the tenant's"
                                                  " namespace; ask your platform team to check its RBAC.")
    return ApiError(502, "cluster_error", f"The cluster answered {error.status}; try again.")
