"""What a tenant may write into a VoiceAgent through the gateway, and how it becomes a server-side apply.

The writable part is a subset of VoiceAgentSpec's own fields (never the worker image, env or resources, which
are the platform's), checked against the Tenant's allowed regions and quotas, and applied with the gateway's
field manager. The apiserver then validates again through the CRD (schema and CEL): its refusals come back
as 422 with the field path, like the gateway's own.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError, create_model

from voxfleet.api import labels
from voxfleet.api.model_base import ApiModel
from voxfleet.api.voiceagent import GROUP, KIND, PLURAL, VERSION, VoiceAgentSpec
from voxfleet.gateway.api_errors import ApiError, validation_details
from voxfleet.gateway.kube_client import KubeApiError, namespaced_path
from voxfleet.gateway.tenant_auth import TenantContext

FIELD_MANAGER = "voxfleet-gateway"
TENANT_WRITABLE_FIELDS = ("greeting", "system_prompt", "pipeline", "turn_detection", "interruptions", "tools",
                          "intents", "regions", "scaling", "limits", "observability")

# The request body of PUT /v1/agents/{agent}: VoiceAgentSpec's own field definitions, minus the platform's.
AgentSpecInput = create_model(
    "AgentSpecInput",
    __base__=ApiModel,
    __doc__="The parts of a VoiceAgent spec a tenant may set: what the agent says and does, its regions and"
            " scaling. Worker image, env and resources are the platform's and are refused here.",
    **{name: (VoiceAgentSpec.model_fields[name].annotation, VoiceAgentSpec.model_fields[name])
       for name in TENANT_WRITABLE_FIELDS},
)


def agent_path(namespace: str, name: str | None = None) -> str:
    return namespaced_path(GROUP, VERSION, PLURAL, namespace, name)


def checked_spec(body: dict[str, Any]) -> tuple[dict[str, Any], VoiceAgentSpec | None, list[dict[str, Any]]]:
    """The tenant's spec as wire JSON (only what the tenant set), parsed with every default filled in, and the
    cross-field problems pydantic found (tool references, unique names), if any.

    Field-level problems raise 422 at once with one detail per field (paths relative to the spec). Cross-field
    ones are returned so the caller can ask the apiserver (dry run) for its more precise field paths first.
    """
    try:
        writable = AgentSpecInput.model_validate(body)
    except ValidationError as error:
        raise ApiError(422, "invalid_agent", "The agent spec is not valid; see details for each field.",
                       details=validation_details(list(error.errors()))) from None
    wire = writable.model_dump(mode="json", by_alias=True, exclude_unset=True)
    try:
        return wire, VoiceAgentSpec.model_validate(wire), []
    except ValidationError as error:
        return wire, None, validation_details(list(error.errors()))


def _regions_of(agent: dict[str, Any]) -> list[Any]:
    try:
        return VoiceAgentSpec.model_validate(agent.get("spec") or {}).regions
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
    if error.code == 422:
        details = []
        for cause in error.causes:
            field = str(cause.get("field", ""))
            field = field[len("spec."):] if field.startswith("spec.") else field
            details.append({"field": field, "message": str(cause.get("message", ""))[:1000],
                            "reason": str(cause.get("reason", "FieldValueInvalid"))})
        return ApiError(422, "invalid_agent", "The cluster refused the agent spec; see details for each field.",
                        details=details)
    if error.code == 409:
        return ApiError(409, "conflict", "The agent changed while this request ran; read it again and retry.")
    if error.code == 404:
        return ApiError(404, "agent_not_found", "No such agent.")
    if error.code == 403:
        return ApiError(503, "gateway_forbidden", "The gateway is not allowed to write agents in the tenant's"
                                                  " namespace; ask your platform team to check its RBAC.")
    return ApiError(502, "cluster_error", f"The cluster answered {error.code}; try again.")
