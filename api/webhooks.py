"""The tenant webhooks contract: the event types, what a tenant sends to register an endpoint, and what it reads
back (endpoints, deliveries and their attempts).

A receiver gets `POST <url>` with the JSON envelope {"id", "type", "createdAt", "tenant", "data"} (the id is
the event's idempotency key: at-least-once delivery may repeat an event, never with another id) and the headers
`Voxfleet-Event-Id`, `Voxfleet-Event-Type` and `Voxfleet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
"<t>.<raw body>")>` (docs/tenant-product.md shows how to verify it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator

from voxfleet.api.model_base import ApiModel

EventType = Literal["session.started", "session.ended", "agent.ready", "agent.degraded"]
EVENT_TYPES: tuple[str, ...] = ("session.started", "session.ended", "agent.ready", "agent.degraded")

SIGNATURE_HEADER = "Voxfleet-Signature"
EVENT_ID_HEADER = "Voxfleet-Event-Id"
EVENT_TYPE_HEADER = "Voxfleet-Event-Type"
ENDPOINT_ID_PATTERN = r"^whe_[0-9a-f]{24}$"
MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 200

DeliveryStatus = Literal["pending", "delivered", "failed"]
AttemptOutcome = Literal["delivered", "http_error", "timeout", "unreachable", "refused", "no_signing_key"]


class WebhookCreate(ApiModel):
    """POST /v1/webhooks."""

    url: str = Field(min_length=1, max_length=MAX_URL_LENGTH,
                     description="Where events are POSTed: https (plain http only to networks the platform allows),"
                                 " a public host; no credentials in the URL.")
    events: list[EventType] = Field(min_length=1, max_length=len(EVENT_TYPES),
                                    description="The event types this endpoint receives.")
    description: str = Field(default="", max_length=MAX_DESCRIPTION_LENGTH, description="Your note about it.")

    @field_validator("events")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("events must not repeat an event type")
        return value

    @field_validator("description")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(ord(c) < 0x20 for c in value):
            raise ValueError("description must not contain control characters")
        return value


class WebhookView(ApiModel):
    id: str
    url: str
    events: list[EventType]
    description: str
    created_at: datetime


class WebhookCreated(WebhookView):
    secret: str = Field(description="The signing secret: shown this once, never again (the platform does not store"
                                    " it; delete and re-create the endpoint to get a new one).")


class WebhookList(ApiModel):
    items: list[WebhookView]


class DeliveryAttempt(ApiModel):
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None = Field(default=None, description="The receiver's HTTP status, when it answered.")
    outcome: AttemptOutcome
    error: str | None = Field(default=None, description="Why it failed, in the platform's words.")


class Delivery(ApiModel):
    id: str
    event_id: str
    event_type: EventType
    status: DeliveryStatus
    created_at: datetime
    next_attempt_at: datetime | None = Field(default=None, description="When it is tried next (pending only).")
    delivered_at: datetime | None = None
    attempts: list[DeliveryAttempt]


class DeliveryList(ApiModel):
    items: list[Delivery]
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= for the next (older) page.")
