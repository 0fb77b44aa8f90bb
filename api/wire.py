"""What the gateway, operator and workers say to each other over HTTP (the worker control API).

The worker is the single authority on its slots: the gateway claims one with a DispatchRequest and gets either
a DispatchResponse (accepted) or 409; the operator and gateway read LoadReports from `GET /v1/load`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from voxfleet.api.model_base import ApiModel

WORKER_TOKEN_HEADER = "Authorization"  # "Bearer <platform worker token>"
SESSION_ID_PATTERN = r"^[A-Za-z0-9_.~-]{8,200}$"
MAX_METADATA_BYTES = 4096

SessionPhase = Literal["starting", "active", "ended"]
EndReason = Literal["caller-left", "max-duration", "idle", "deleted", "error", "drained", "room-finished"]


class DispatchRequest(ApiModel):
    """Gateway -> worker: run this session in this LiveKit room."""

    session_id: str = Field(pattern=SESSION_ID_PATTERN, description="Signed session id minted by the gateway.")
    tenant: str = Field(max_length=63, description="Tenant name.")
    agent: str = Field(max_length=63, description="VoiceAgent name.")
    region: str = Field(max_length=63, description="Region the session runs in.")
    room: str = Field(min_length=1, max_length=256, description="LiveKit room name.")
    livekit_url: str = Field(max_length=2048, description="The region's LiveKit URL (ws:// or wss://).")
    livekit_token: str = Field(max_length=8192, description="Access token for the agent participant in this room."
                                                             " Workers never hold the LiveKit API secret.")
    agent_identity: str = Field(max_length=256, description="Unique identity of the agent participant.")
    caller_identity: str | None = Field(default=None, max_length=256, description="The caller's identity, if known.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Tenant metadata (size-limited).")
    recovery: bool = Field(default=False, description="The session lost its worker; say the recovery line.")
    eval_mode: bool = Field(default=False, description="Keep tool calls and transcript for an eval run.")
    traceparent: str | None = Field(default=None, max_length=128, description="W3C trace context of the caller.")

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        import json

        if len(json.dumps(value)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
        return value


class SessionState(ApiModel):
    """One session as its worker sees it."""

    session_id: str
    tenant: str
    agent: str
    region: str
    room: str
    phase: SessionPhase
    started_at: datetime
    ended_at: datetime | None = None
    end_reason: EndReason | None = None
    recovery: bool = False


class LoadReport(ApiModel):
    """`GET /v1/load`: a worker's capacity, as the operator's scaler and the gateway's placement read it."""

    worker: str = Field(description="Pod name.")
    tenant: str
    agent: str
    region: str
    capacity: int = Field(ge=0, description="sessionsPerWorker.")
    active: int = Field(ge=0, description="Slots in use.")
    free: int = Field(ge=0, description="Slots a dispatch may claim now (0 while draining or not ready).")
    ready: bool = Field(description="Models loaded and taking sessions.")
    draining: bool = Field(default=False, description="Got SIGTERM: finishing calls, taking none.")
    config_hash: str = Field(default="", description="Hash of the agent config this worker runs.")
    idle_seconds: float = Field(default=0.0, ge=0, description="Seconds since the worker last had a session.")


class DispatchResponse(ApiModel):
    """Worker -> gateway: the slot is claimed (a repeat of the same session id answers the same)."""

    session: SessionState
    load: LoadReport


class ErrorBody(ApiModel):
    """Every 4xx/5xx of every voxfleet HTTP API: a stable code and a message that says what to do."""

    code: str = Field(description="Stable machine-readable error code, e.g. worker_full.")
    message: str = Field(description="What went wrong and what to do about it.")
    details: list[dict[str, Any]] = Field(default_factory=list, description="Per-field problems, if any.")
