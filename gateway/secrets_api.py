"""`/v1/secrets`: a tenant writes, lists and deletes its own secrets (provider keys, tool credentials).

Write-only: answers carry names, keys and times, never a value; values are never logged, and errors never
echo them (validation details name the field, not the input). Only Secrets labelled as this tenant's
(voxfleet.api.labels.TENANT_SECRET) are read, replaced or deleted: a name taken by any other Secret in the
namespace (the platform's worker credential, a service-account token) is a 409, and it is never overwritten.
Every path is built from the authenticated tenant's namespace, never from the request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from voxfleet.api.spec_secrets import secret_references
from voxfleet.gateway import tenant_secrets
from voxfleet.gateway.api_errors import ApiError, documented
from voxfleet.gateway.openapi_links import AFTER_SECRET_WRITE
from voxfleet.gateway.resource_locations import set_location
from voxfleet.gateway.runtime import GatewayRuntime, runtime_of
from voxfleet.gateway.tenant_auth import TenantContext, require_tenant
from voxfleet.gateway.tenant_secrets import SecretList, SecretView, SecretWrite
from voxfleet.kube.errors import Conflict, KubeApiError, NotFound

SecretName = Annotated[str, Path(min_length=1, max_length=tenant_secrets.MAX_NAME_LENGTH,
                                 description="Secret name: a DNS-1123 subdomain; names starting with"
                                             f" {tenant_secrets.RESERVED_PREFIX!r} are the platform's.")]

router = APIRouter(prefix="/v1/secrets", tags=["secrets"],
                   responses=documented(401, 403, 404, 409, 413, 422, 429, 502, 503))


@router.get("", response_model=SecretList, summary="List the tenant's secrets (names and keys, never values)")
async def list_secrets(request: Request, tenant: TenantContext = Depends(require_tenant)) -> SecretList:
    runtime = runtime_of(request)
    try:
        listing = await runtime.kube.list("Secret", tenant.namespace, label_selector=tenant_secrets.SELECTOR)
    except NotFound:
        return SecretList(items=[])
    except KubeApiError as error:
        raise _refusal(runtime, error) from None
    items = [tenant_secrets.view(obj) for obj in listing.get("items") or []
             if tenant_secrets.is_tenant_secret(obj, tenant.name)]
    return SecretList(items=sorted(items, key=lambda item: item.name))


@router.get("/{name}", response_model=SecretView, summary="Read a secret's keys and times (never its values)")
async def get_secret(request: Request, name: SecretName, tenant: TenantContext = Depends(require_tenant)) -> SecretView:
    found = await _read_own(request, tenant, name)
    if found is None:
        raise _not_found(name)
    return tenant_secrets.view(found)


@router.put("/{name}", response_model=SecretView, summary="Create or replace a secret (all its keys at once)",
            responses={200: {"links": AFTER_SECRET_WRITE},
                       201: {"model": SecretView, "description": "Created.", "links": AFTER_SECRET_WRITE}})
async def put_secret(request: Request, response: Response, name: SecretName, body: SecretWrite,
                     tenant: TenantContext = Depends(require_tenant)) -> SecretView:
    runtime = runtime_of(request)
    _check_name(runtime, name)
    problem = tenant_secrets.size_problem(body.data)
    if problem:
        raise ApiError(422, "secret_too_large", f"The secret is too large: {problem}.",
                       details=[{"field": "data", "message": problem, "reason": "TooLarge"}])
    existing = await _read(runtime, tenant.namespace, name)
    try:
        if existing is None:
            created = await runtime.kube.create(
                tenant_secrets.manifest(tenant.namespace, name, tenant.name, body.data))
            set_location(request, response, "v1", "secrets", name)  # 201 Created, and where to read it
            return tenant_secrets.view(created)
        if not tenant_secrets.is_tenant_secret(existing, tenant.name):
            raise _taken(name)
        replaced = await runtime.kube.replace(
            tenant_secrets.manifest(tenant.namespace, name, tenant.name, body.data,
                                    resource_version=existing["metadata"]["resourceVersion"]))
        return tenant_secrets.view(replaced)
    except Conflict:  # created or changed by someone else since we read it: never overwrite blindly
        raise ApiError(409, "conflict", f"The secret {name!r} changed while this request ran; retry.",
                       details=[{"field": "name", "message": "changed concurrently", "reason": "Conflict"}]
                       ) from None
    except NotFound:
        raise _tenant_not_ready(runtime, tenant) from None
    except KubeApiError as error:
        raise _refusal(runtime, error) from None


@router.delete("/{name}", status_code=204, summary="Delete a secret no agent references")
async def delete_secret(request: Request, name: SecretName,
                        tenant: TenantContext = Depends(require_tenant)) -> Response:
    runtime = runtime_of(request)
    found = await _read_own(request, tenant, name)
    if found is None:
        raise _not_found(name)
    users = _referencing_agents(runtime, tenant, name)
    if users:
        agents = sorted({agent for agent, _ in users})
        raise ApiError(409, "secret_in_use",
                       f"The secret {name!r} is referenced by agent(s) {', '.join(agents)}; change or delete them"
                       " first (deleting it now would stop their workers from starting).",
                       details=[{"field": "name", "message": f"agent {agent!r} references it at {field}",
                                 "reason": "InUse"} for agent, field in users])
    meta = found["metadata"]
    try:  # only the version we checked: a Secret replaced meanwhile is not deleted unseen
        deleted = await runtime.kube.delete("Secret", name, tenant.namespace,
                                            preconditions={"uid": meta["uid"],
                                                           "resourceVersion": meta["resourceVersion"]})
    except Conflict:
        raise ApiError(409, "conflict", f"The secret {name!r} changed while this request ran; retry.") from None
    except KubeApiError as error:
        raise _refusal(runtime, error) from None
    if deleted is None:  # gone meanwhile
        raise _not_found(name)
    return Response(status_code=204)


def _referencing_agents(runtime: GatewayRuntime, tenant: TenantContext, name: str) -> list[tuple[str, str]]:
    """(agent, field) for every reference to this secret among the tenant's agents, as the gateway's watch sees
    them (an agent written a moment ago may be missing; the operator's check of references covers that race)."""
    users = []
    for obj in runtime.agents.in_namespace(tenant.namespace):
        info = runtime.agents.parse(obj)
        if info is None:
            continue
        users.extend((info.name, field) for field, ref in secret_references(info.spec) if ref.name == name)
    return sorted(users)


def _check_name(runtime: GatewayRuntime, name: str) -> None:
    problem = tenant_secrets.name_problem(name, {runtime.settings.worker_token_secret})
    if problem:
        raise ApiError(422, "invalid_secret_name", f"The secret name {name!r} is not allowed: {problem}.",
                       details=[{"field": "name", "message": problem, "reason": "FieldValueInvalid"}])


async def _read(runtime: GatewayRuntime, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await runtime.kube.get_or_none("Secret", name, namespace)
    except KubeApiError as error:
        raise _refusal(runtime, error) from None


async def _read_own(request: Request, tenant: TenantContext, name: str) -> dict[str, Any] | None:
    """The Secret when it is this tenant's; None when missing or someone else's (both are 404 to a reader)."""
    if not tenant_secrets.DNS_SUBDOMAIN.match(name):  # never a path of its own ("..") on the apiserver
        return None
    found = await _read(runtime_of(request), tenant.namespace, name)
    return found if found is not None and tenant_secrets.is_tenant_secret(found, tenant.name) else None


def _not_found(name: str) -> ApiError:
    return ApiError(404, "secret_not_found", f"This tenant has no secret named {name!r}; write it with"
                                             f" PUT /v1/secrets/{name}.")


def _taken(name: str) -> ApiError:
    return ApiError(409, "secret_name_taken",
                    f"The name {name!r} belongs to a Secret the platform (or an administrator) wrote in this"
                    " namespace, not to one of your secrets; it is left unchanged. Choose another name.",
                    details=[{"field": "name", "message": "taken by a Secret that is not a tenant secret",
                              "reason": "AlreadyExists"}])


def _tenant_not_ready(runtime: GatewayRuntime, tenant: TenantContext) -> ApiError:
    return ApiError(503, "tenant_not_ready", f"The tenant's namespace {tenant.namespace!r} does not exist yet; try"
                                             " again shortly.",
                    headers={"Retry-After": str(runtime.settings.retry_after_seconds)})


def _refusal(runtime: GatewayRuntime, error: KubeApiError) -> ApiError:
    """The apiserver's other answers, without its message (which could quote what was sent)."""
    if error.status == 403:
        return ApiError(503, "gateway_forbidden", "The gateway may not manage secrets in the tenant's namespace yet"
                                                  " (the operator grants it per tenant); try again shortly, and ask"
                                                  " your platform team if it persists.",
                        headers={"Retry-After": str(runtime.settings.retry_after_seconds)})
    if error.status == 422:
        return ApiError(422, "invalid_secret", "The cluster refused the secret (a key name it does not accept?);"
                                               " check the key names.",
                        details=[{"field": "data", "message": "refused by the cluster", "reason": "Invalid"}])
    return ApiError(502, "cluster_error", f"The cluster answered {error.status}; try again.")
