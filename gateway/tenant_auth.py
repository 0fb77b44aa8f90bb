"""Who is calling: the FastAPI dependency that turns `Authorization: Bearer <API key>` into a tenant.

401 when there is no valid key (missing, malformed, unknown and revoked keys get the same answer, so the
answer tells an attacker nothing about which key ids exist); a key made a moment ago, before this replica's
watch showed it, is read through from the apiserver (key_store.py); 403 when the key is valid but its Tenant is
gone or unusable, 503 with Retry-After when its Tenant was made a moment ago and is not loaded yet; 429 when the
tenant is over its request rate (every answer says where the tenant stands: RateLimit-* headers). The key itself is never logged or echoed.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from voxfleet.api.tenant import TenantSpec
from voxfleet.gateway import rate_limits
from voxfleet.gateway.api_errors import ApiError
from voxfleet.gateway.rate_limits import TenantRateLimiter
from voxfleet.gateway.runtime import GatewayRuntime, runtime_of

_bearer = HTTPBearer(auto_error=False, description="A tenant API key (`voxfleet keys create --tenant <name>`).")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="voxfleet"'}


@dataclass(frozen=True)
class TenantContext:
    """The authenticated tenant of a request."""

    name: str
    namespace: str
    spec: TenantSpec
    key_id: str


async def require_tenant(request: Request,
                         credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> TenantContext:
    runtime: GatewayRuntime = runtime_of(request)
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        runtime.metrics.auth_failures.labels(reason="missing").inc()
        raise ApiError(401, "missing_api_key", "Send your API key as `Authorization: Bearer <key>`.",
                       headers=_CHALLENGE)
    stored = await runtime.keys.authenticate(credentials.credentials.strip())
    if stored is None:
        runtime.metrics.auth_failures.labels(reason="invalid").inc()
        raise ApiError(401, "invalid_api_key", "The API key is not valid: it is malformed, unknown or revoked."
                                               " Ask your platform team for a key (`voxfleet keys create`).",
                       headers=_CHALLENGE)
    tenant = runtime.tenants.get(stored.tenant)
    if tenant is None and await runtime.tenants.exists_unseen(stored.tenant):
        runtime.metrics.auth_failures.labels(reason="tenant_loading").inc()
        raise ApiError(503, "tenant_loading", f"The tenant of key {stored.key_id} was created a moment ago and this"
                                              " gateway has not loaded it yet; retry after the Retry-After seconds.",
                       headers={"Retry-After": "1"})
    if tenant is None:
        runtime.metrics.auth_failures.labels(reason="tenant").inc()
        why = runtime.tenants.refusal(stored.tenant) or "it no longer exists"
        raise ApiError(403, "tenant_unavailable", f"The key {stored.key_id} belongs to a tenant the gateway does not"
                                                  f" serve: {why}; ask your platform team.")
    wait = runtime.rate_limiter.try_acquire(tenant.name)
    # RateLimit-* headers on this request's answer, whatever answers it (rate_limits.RateLimitHeaders)
    setattr(request.state, rate_limits.STATE_KEY, runtime.rate_limiter.status(tenant.name))
    if wait > 0:
        runtime.metrics.rate_limited.labels(tenant=tenant.name).inc()
        raise ApiError(429, "rate_limited", "Too many requests for this tenant; slow down and retry after the"
                                            " Retry-After seconds.",
                       headers={"Retry-After": TenantRateLimiter.retry_after_header(wait)})
    request.state.tenant = tenant.name  # for access logs and metrics, never the key
    return TenantContext(name=tenant.name, namespace=tenant.namespace, spec=tenant.spec, key_id=stored.key_id)
