"""`/v1/webhooks`: a tenant registers endpoints for its events, reads them and their delivery log, deletes them.

Every query is scoped by the authenticated tenant: another tenant's endpoint is a 404 like an unknown one. A URL
is hostile input: it passes the outbound policy at registration (syntax, then every address its host resolves to
must be public or in a network the platform allows), and again at every connection (webhook_delivery). Plain
http is accepted only when every address is in a network the platform allows (`outbound_allowed_cidrs`: dev and
tests allow 127.0.0.1); anywhere else it must be https. A tenant has at most max_endpoints_per_tenant endpoints
(counted under a per-tenant advisory lock, so concurrent creates cannot pass it), a delivery page at most 100
deliveries with at most max_attempts attempts each.

The signing secret is derived (webhook_secrets), shown once in the 201 and never stored, logged or shown again.

This router's lifespan runs every gateway's share of the delivery (webhook_delivery.WebhookDispatcher) and the
agent.ready/agent.degraded events (agent_events.AgentEvents) while the app runs, when a database is configured.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import secrets as random_tokens
from collections.abc import AsyncIterator
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from sqlalchemy import and_, delete, func, select, text

from voxfleet.api.outbound import OutboundPolicy, OutboundURLRefused, redact_url
from voxfleet.api.webhooks import (ENDPOINT_ID_PATTERN, Delivery, DeliveryAttempt, DeliveryList, WebhookCreate,
                                   WebhookCreated, WebhookList, WebhookView)
from voxfleet.gateway import webhook_secrets
from voxfleet.gateway.agent_events import AgentEvents
from voxfleet.gateway.api_errors import ApiError, documented
from voxfleet.gateway.resource_locations import set_location
from voxfleet.gateway.runtime import runtime_of
from voxfleet.gateway.store_access import require_database
from voxfleet.gateway.tenant_auth import TenantContext, require_tenant
from voxfleet.gateway.webhook_delivery import WebhookDispatcher
from voxfleet.gateway.webhook_settings import TenantWebhookSettings
from voxfleet.store.database import Database
from voxfleet.store.webhook_tables import webhook_attempts, webhook_deliveries, webhook_endpoints

log = structlog.get_logger(__name__)

MAX_PAGE = 100
DEFAULT_PAGE = 20


@contextlib.asynccontextmanager
async def deliver_while_running(app: FastAPI) -> AsyncIterator[None]:
    """Nested inside the app's lifespan (after the runtime started: its watches are synced)."""
    database = getattr(app.state, "database", None)
    settings = TenantWebhookSettings()
    app.state.webhook_settings = settings
    if database is None:
        yield
        return
    runtime = app.state.runtime
    dispatcher = WebhookDispatcher(database, settings, OutboundPolicy.from_settings(runtime.settings),
                                   runtime.session_keys, runtime.metrics.registry)
    agent_events = AgentEvents(database, runtime.agents.cache, runtime.tenants,
                               max_age_seconds=settings.agent_event_max_age_seconds)
    dispatcher.start()
    agent_events.start()
    try:
        yield
    finally:
        await agent_events.stop()
        await dispatcher.stop()


router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], lifespan=deliver_while_running,
                   responses=documented(401, 403, 404, 409, 413, 422, 429, 503))

EndpointId = Annotated[str, Path(max_length=64, description="The endpoint's id (whe_...).")]


def _settings(request: Request) -> TenantWebhookSettings:
    found = getattr(request.app.state, "webhook_settings", None)
    return found if found is not None else TenantWebhookSettings()


@router.post("", status_code=201, response_model=WebhookCreated,
             summary="Register a webhook endpoint (its signing secret is in this answer only)")
async def create_webhook(request: Request, response: Response, body: WebhookCreate,
                         tenant: TenantContext = Depends(require_tenant),
                         database: Database = Depends(require_database)) -> WebhookCreated:
    runtime = runtime_of(request)
    await _check_url(OutboundPolicy.from_settings(runtime.settings), body.url)
    limit = _settings(request).max_endpoints_per_tenant
    endpoint_id = "whe_" + random_tokens.token_hex(12)
    nonce = webhook_secrets.new_nonce()
    key = runtime.session_keys[0]
    async with database.transaction() as conn:
        # Concurrent creates of one tenant take turns here, so the count below cannot be passed by a race.
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
                           {"name": f"voxfleet-webhooks:{tenant.name}"})
        count = await conn.scalar(select(func.count()).select_from(webhook_endpoints).where(
            webhook_endpoints.c.tenant == tenant.name))
        if count >= limit:
            raise ApiError(409, "too_many_webhooks", f"This tenant already has {count} webhook endpoints, the most it"
                                                     f" may have ({limit}); delete one first.",
                           details=[{"field": "url", "message": f"at most {limit} endpoints per tenant",
                                     "reason": "TooMany"}])
        row = (await conn.execute(webhook_endpoints.insert().values(
            id=endpoint_id, tenant=tenant.name, url=body.url, events=list(body.events),
            description=body.description, secret_nonce=nonce, secret_key_id=webhook_secrets.key_id(key),
        ).returning(*webhook_endpoints.c))).one()
    log.info("webhook endpoint created", tenant=tenant.name, endpoint=endpoint_id, url=redact_url(body.url),
             events=list(body.events))
    set_location(request, response, "v1", "webhooks", endpoint_id)
    secret = webhook_secrets.derive(key, tenant=tenant.name, endpoint_id=endpoint_id, nonce=nonce)
    return WebhookCreated(**_view(row).model_dump(), secret=secret)


@router.get("", response_model=WebhookList, summary="List the tenant's webhook endpoints (never their secrets)")
async def list_webhooks(tenant: TenantContext = Depends(require_tenant),
                        database: Database = Depends(require_database)) -> WebhookList:
    async with database.connection() as conn:
        rows = (await conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.tenant == tenant.name)
                                   .order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id))).all()
    return WebhookList(items=[_view(row) for row in rows])


@router.get("/{endpoint_id}", response_model=WebhookView, summary="Read a webhook endpoint (never its secret)")
async def get_webhook(endpoint_id: EndpointId, tenant: TenantContext = Depends(require_tenant),
                      database: Database = Depends(require_database)) -> WebhookView:
    async with database.connection() as conn:
        return _view(await _own_endpoint(conn, tenant, endpoint_id))


@router.delete("/{endpoint_id}", status_code=204,
               summary="Delete a webhook endpoint, its pending deliveries and its delivery log")
async def delete_webhook(endpoint_id: EndpointId, tenant: TenantContext = Depends(require_tenant),
                         database: Database = Depends(require_database)) -> Response:
    async with database.transaction() as conn:
        deleted = await conn.execute(delete(webhook_endpoints).where(and_(
            webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.tenant == tenant.name)))
    if deleted.rowcount == 0:
        raise _not_found(endpoint_id)
    log.info("webhook endpoint deleted", tenant=tenant.name, endpoint=endpoint_id)
    return Response(status_code=204)


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryList,
            summary="The endpoint's deliveries, newest first, each with its attempts")
async def list_webhook_deliveries(
        endpoint_id: EndpointId,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Deliveries per page.")] = DEFAULT_PAGE,
        cursor: Annotated[str | None, Query(max_length=20, pattern=r"^[1-9][0-9]{0,18}$",
                                            description="nextCursor of the previous page.")] = None,
        tenant: TenantContext = Depends(require_tenant),
        database: Database = Depends(require_database)) -> DeliveryList:
    async with database.connection() as conn:
        await _own_endpoint(conn, tenant, endpoint_id)
        query = select(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id)
        if cursor is not None:
            query = query.where(webhook_deliveries.c.id < int(cursor))
        rows = (await conn.execute(query.order_by(webhook_deliveries.c.id.desc()).limit(limit + 1))).all()
        page, more = rows[:limit], len(rows) > limit
        attempts: dict[int, list[DeliveryAttempt]] = {row.id: [] for row in page}
        if page:
            found = await conn.execute(select(webhook_attempts).where(
                webhook_attempts.c.delivery_id.in_(list(attempts))).order_by(
                webhook_attempts.c.delivery_id, webhook_attempts.c.attempt))
            for attempt in found:
                attempts[attempt.delivery_id].append(DeliveryAttempt(
                    attempt=attempt.attempt, started_at=attempt.started_at, duration_ms=attempt.duration_ms,
                    status_code=attempt.status_code, outcome=attempt.outcome, error=attempt.error))
    items = [Delivery(id=str(row.id), event_id=row.event_id, event_type=row.event_type, status=row.status,
                      created_at=row.created_at, delivered_at=row.delivered_at,
                      next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
                      attempts=attempts[row.id]) for row in page]
    return DeliveryList(items=items, next_cursor=str(page[-1].id) if more else None)


async def _check_url(policy: OutboundPolicy, url: str) -> None:
    """422 naming `url` unless the outbound policy lets the gateway connect there (host resolved now; checked
    again at every connection) and it is https, or http into a network the platform allows."""
    try:
        target, addresses = await policy.check(url)
    except OutboundURLRefused as refused:
        raise _bad_url(f"{refused.reason}. Use a public https URL.") from None
    if target.scheme != "https":
        inside = all(any(ipaddress.ip_address(address) in network for network in policy.allowed_networks)
                     for address in addresses)
        if not inside:
            raise _bad_url("plain http is not allowed for webhooks (the events carry call reports); use https")


def _bad_url(message: str) -> ApiError:
    return ApiError(422, "invalid_webhook_url", f"The webhook URL is refused: {message}",
                    details=[{"field": "url", "message": message, "reason": "FieldValueInvalid"}])


async def _own_endpoint(conn: Any, tenant: TenantContext, endpoint_id: str) -> Any:
    row = None
    if _valid_id(endpoint_id):
        row = (await conn.execute(select(webhook_endpoints).where(and_(
            webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.tenant == tenant.name)))).one_or_none()
    if row is None:
        raise _not_found(endpoint_id)
    return row


def _valid_id(endpoint_id: str) -> bool:
    return re.fullmatch(ENDPOINT_ID_PATTERN, endpoint_id) is not None


def _not_found(endpoint_id: str) -> ApiError:
    shown = endpoint_id if _valid_id(endpoint_id) else "(malformed id)"
    return ApiError(404, "webhook_not_found", f"No webhook endpoint {shown} for this tenant.")


def _view(row: Any) -> WebhookView:
    return WebhookView(id=row.id, url=row.url, events=list(row.events), description=row.description,
                       created_at=row.created_at)
