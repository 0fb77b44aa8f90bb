"""How the gateway delivers tenant webhooks (env prefix VOXFLEET_TENANT_WEBHOOK_, e.g.
VOXFLEET_TENANT_WEBHOOK_RETRY_BASE_SECONDS=0.5 in tests). The platform team's choices, never a tenant's.

The default schedule: 10 attempts, the n-th retry about 60 s * 2.3^(n-1) after the previous one (each gap
+-20 % at random, so receivers coming back from an outage are not hit by every gateway in step, capped at 12 h):
the last attempt is about 22 hours after the event.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TenantWebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOXFLEET_TENANT_WEBHOOK_", extra="ignore")

    max_endpoints_per_tenant: int = Field(default=10, ge=1, le=100, description="Endpoints a tenant may register.")
    max_attempts: int = Field(default=10, ge=1, le=20, description="Attempts per delivery before it is failed.")
    retry_base_seconds: float = Field(default=60.0, gt=0, description="The gap before the first retry.")
    retry_factor: float = Field(default=2.3, ge=1.0, le=10.0, description="Each further gap: this times longer.")
    retry_max_seconds: float = Field(default=12 * 3600.0, gt=0, description="No gap longer than this.")
    retry_jitter: float = Field(default=0.2, ge=0, le=0.9, description="Each gap varies by +- this fraction.")
    timeout_seconds: float = Field(default=5.0, gt=0, le=30, description="One attempt, connect to last byte read.")
    max_response_bytes: int = Field(default=64 * 1024, ge=0, le=1024 * 1024,
                                    description="What is read of a receiver's answer (then the connection closes).")
    poll_seconds: float = Field(default=1.0, gt=0, le=60, description="How often each gateway looks for due"
                                                                      " deliveries.")
    lease_seconds: float = Field(default=60.0, gt=0, description="How long a claimed delivery is this gateway's:"
                                                                 " a crashed gateway's claims return after it.")
    batch_size: int = Field(default=20, ge=1, le=500, description="Deliveries claimed per poll.")
    concurrency: int = Field(default=10, ge=1, le=200, description="Deliveries in flight per gateway.")
    delivery_log_days: int = Field(default=30, ge=1, le=3650, description="Deliveries (and their attempts) kept"
                                                                          " for the log, then deleted.")
    agent_event_max_age_seconds: float = Field(
        default=300.0, ge=0, description="A gateway starting up sends the agent.ready/agent.degraded transitions"
                                         " this recent (another replica may have been down too; event ids dedupe).")

    @model_validator(mode="after")
    def _lease_outlives_attempt(self) -> "TenantWebhookSettings":
        if self.lease_seconds < self.timeout_seconds + 1:
            raise ValueError("lease_seconds must exceed timeout_seconds by at least 1 s, or a slow attempt's"
                             " delivery is claimed again by another gateway while it is still in flight")
        return self

    def retry_gap(self, attempts_made: int, draw: float) -> float:
        """Seconds until the next attempt after `attempts_made` attempts; draw in [0, 1) picks the jitter."""
        gap = min(self.retry_base_seconds * self.retry_factor ** max(attempts_made - 1, 0), self.retry_max_seconds)
        return gap * (1 + self.retry_jitter * (2 * draw - 1))
