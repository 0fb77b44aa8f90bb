"""The tables of tenant webhooks, on the store's one `metadata`: endpoints, the outbox of deliveries, and the
attempts made for each delivery.

The outbox is the delivery queue itself: a write path inserts its event's deliveries in the same transaction as
the change it reports (voxfleet.store.webhook_outbox.enqueue), so an event exists exactly when its change
committed, and a gateway that dies afterwards loses nothing (voxfleet.gateway.webhook_delivery picks the rows
up). An endpoint's signing secret is not stored: only the nonce it is derived from and which platform key
derived it (voxfleet.gateway.webhook_secrets).
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, DateTime, ForeignKey, Identity, Index, Integer, Table, Text,
                        UniqueConstraint, text)
from sqlalchemy.dialects.postgresql import ARRAY

from voxfleet.store.schema import metadata

webhook_endpoints = Table(
    "webhook_endpoints", metadata,
    Column("id", Text, primary_key=True),  # "whe_..." (random): never guessable, unique over all tenants
    Column("tenant", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("events", ARRAY(Text), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("secret_nonce", Text, nullable=False),  # the secret is HMAC(platform key, tenant|id|nonce)
    Column("secret_key_id", Text, nullable=False),  # which platform key (a fingerprint, never the key)
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Index("ix_webhook_endpoints_tenant_created", "tenant", "created_at"),
)

# Delivery status: pending (to be tried at next_attempt_at), delivered (a 2xx came back), failed (every attempt
# used up). lease_until: a dispatcher claimed the row until then; a crashed dispatcher's rows return after it.
webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("endpoint_id", Text, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("tenant", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("body", Text, nullable=False),  # the exact bytes sent and signed, the same at every attempt
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("lease_owner", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    # One event reaches one endpoint once, however often it is enqueued (enqueue's ON CONFLICT DO NOTHING).
    UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_id_event_id"),
)
# What the dispatchers claim: the due pending rows, oldest due first (delivered and failed rows are not in it).
Index("ix_webhook_deliveries_due", webhook_deliveries.c.next_attempt_at,
      postgresql_where=webhook_deliveries.c.status == "pending")
# An endpoint's delivery log, newest first, with the id as the keyset cursor.
Index("ix_webhook_deliveries_endpoint_id", webhook_deliveries.c.endpoint_id, webhook_deliveries.c.id.desc())

webhook_attempts = Table(
    "webhook_attempts", metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("delivery_id", BigInteger, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),  # the receiver's answer; None when none came
    Column("error", Text, nullable=True),  # why it failed, in our words (never the receiver's body)
    Column("outcome", Text, nullable=False),  # delivered, http_error, timeout, unreachable, refused
    Index("ix_webhook_attempts_delivery_id_attempt", "delivery_id", "attempt"),
)
