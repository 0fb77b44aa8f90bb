"""The outbox of tenant webhooks: a write path reports an event by inserting its deliveries in the SAME
transaction as the change it reports, so the event exists exactly when the change committed.

`enqueue(conn, tenant=..., event_type=..., payload=..., event_id=...)` inserts one pending delivery per enabled
endpoint of the tenant that subscribed to the event type and returns how many. A repeated event (the same
event_id: a retried request, a second gateway replica seeing the same transition) inserts nothing again: the
unique (endpoint_id, event_id) pair makes it ON CONFLICT DO NOTHING, so a receiver never gets one event twice
from two enqueues. The dispatcher (voxfleet.gateway.webhook_delivery) sends them later, at least once.

`payload` is the event's `data` (for `session.ended`, the CallReport's JSON); enqueue wraps it in the envelope
every receiver sees: {"id": event_id, "type", "createdAt", "tenant", "data"}. The envelope is serialised here,
once: the body signed and sent is byte-for-byte the same at every attempt.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from voxfleet.api.webhooks import EVENT_TYPES
from voxfleet.store.webhook_tables import webhook_deliveries, webhook_endpoints

MAX_EVENT_ID_LENGTH = 200
MAX_BODY_BYTES = 1024 * 1024  # a report with a long transcript fits; anything larger is a bug upstream


def envelope(*, tenant: str, event_type: str, event_id: str, data: dict[str, Any],
             created_at: datetime | None = None) -> dict[str, Any]:
    """What a receiver gets: the event id is also its idempotency key."""
    when = (created_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return {"id": event_id, "type": event_type,
            "createdAt": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "tenant": tenant, "data": data}


def body_of(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str)


async def enqueue(conn: AsyncConnection, *, tenant: str, event_type: str, payload: dict[str, Any], event_id: str,
                  occurred_at: datetime | None = None) -> int:
    """One pending delivery per enabled endpoint of `tenant` subscribed to `event_type`; returns how many were
    inserted (0 when none subscribes, or when this event was enqueued before). Call it inside the transaction
    of the change the event reports. `occurred_at`: endpoints created after it do not get the event (an
    old transition seen again at a gateway's start is not news to an endpoint registered since)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    if not event_id or len(event_id) > MAX_EVENT_ID_LENGTH:
        raise ValueError("a webhook event id must have 1 to 200 characters")
    is_envelope = set(payload) == {"id", "type", "createdAt", "tenant", "data"} and payload["id"] == event_id
    event = payload if is_envelope else envelope(tenant=tenant, event_type=event_type, event_id=event_id,
                                                 data=payload, created_at=occurred_at)
    body = body_of(event)
    if len(body.encode()) > MAX_BODY_BYTES:
        raise ValueError(f"webhook event {event_type} is larger than {MAX_BODY_BYTES} bytes")
    wanted = and_(webhook_endpoints.c.tenant == tenant, webhook_endpoints.c.enabled.is_(True),
                  webhook_endpoints.c.events.contains([event_type]))
    if occurred_at is not None:
        wanted = and_(wanted, webhook_endpoints.c.created_at <= occurred_at)
    subscribers = select(webhook_endpoints.c.id, literal(tenant), literal(event_id), literal(event_type),
                         literal(body)).where(wanted)
    statement = insert(webhook_deliveries).from_select(
        ["endpoint_id", "tenant", "event_id", "event_type", "body"], subscribers,
    ).on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"]).returning(webhook_deliveries.c.id)
    inserted = await conn.execute(statement)
    return len(inserted.all())
