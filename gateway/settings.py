"""Gateway settings (env prefix VOXFLEET_): the platform's settings plus what only the gateway needs.

Nested values come as JSON in env vars, e.g.
``VOXFLEET_REGIONS='{"us-east": {"url": "wss://lk-us.example", "apiKey": "...", "apiSecret": "..."}}'`` and
``VOXFLEET_LATENCY_MS='{"us-east": {"eu-west": 80}}'``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.alias_generators import to_camel

from voxfleet.api.settings import PlatformSettings
from voxfleet.gateway.pricing import PriceList

# `make playground` builds it here in a source checkout; installed packages point the setting at their copy.
_SOURCE_PLAYGROUND = Path(__file__).resolve().parents[1] / "playground" / "dist"


class LiveKitRegion(BaseModel):
    """The LiveKit deployment that serves one region (several regions may name the same one)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    url: str = Field(pattern=r"^wss?://", description="What participants connect to (ws:// or wss://).")
    api_url: str | None = Field(default=None, pattern=r"^https?://",
                                description="Twirp API base (default: url with http(s)://).")
    api_key: str = Field(min_length=1)
    api_secret: SecretStr

    def twirp_url(self) -> str:
        if self.api_url:
            return self.api_url
        return "http" + self.url[2:] if self.url.startswith("ws") else self.url


class GatewaySettings(PlatformSettings):
    """Everything `voxfleet gateway` reads at start-up."""

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port of the tenant API (what the Ingress routes).")
    operational_port: int = Field(
        default=9090, ge=0, le=65535,
        description="Port of what is for the platform, not for tenants: /metrics (every tenant's and agent's name"
                    " and traffic), /healthz, /readyz. Bound on the same address as the API; the tenant Ingress"
                    " never routes it, and the API port answers 404 for /metrics.")
    kubeconfig: Path | None = Field(default=None, description="Kubeconfig file (default: $KUBECONFIG, then the"
                                                              " pod's service account, then ~/.kube/config).")
    regions: dict[str, LiveKitRegion] = Field(default_factory=dict,
                                              description="Region name -> the LiveKit that serves it.")
    latency_ms: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Caller region -> serving region -> round-trip ms; missing pairs count as far away.")
    default_caller_region: str | None = Field(
        default=None, description="Where callers are assumed to be when a request gives no hint.")
    session_signing_key: SecretStr | None = Field(default=None, description="HMAC key for session ids (>= 32 bytes)."
                                                                            " Every replica needs the same one.")
    session_signing_key_file: Path | None = Field(default=None, description="File holding the signing key.")
    previous_session_signing_keys: list[SecretStr] = Field(
        default_factory=list, description="Older keys still accepted for verification (rotation).")
    cors_allow_origins: list[str] = Field(default_factory=list, description="Browser origins allowed by CORS.")
    rate_limit_per_second: float = Field(default=50.0, gt=0, description="Requests per second per tenant and"
                                                                        " replica (token bucket refill).")
    rate_limit_burst: int = Field(default=100, ge=1, description="Bucket size: requests a tenant may burst.")
    max_request_bytes: int = Field(default=256 * 1024, ge=1024, description="Largest request body accepted.")
    caller_token_ttl_seconds: int = Field(default=600, ge=10, le=86400,
                                          description="How long the caller has to join with its token.")
    dispatch_timeout_seconds: float = Field(default=2.0, gt=0, description="One dispatch call to a worker.")
    dispatch_attempts: int = Field(default=6, ge=1, le=50, description="Workers tried before answering 503.")
    worker_max_connections: int = Field(default=512, ge=2, le=100000,
                                        description="Connections to workers over all tenants (one shared pool).")
    worker_calls_per_tenant: int = Field(
        default=128, ge=1, le=100000,
        description="Calls to one tenant's workers in flight at once (dispatch, load, session reads), below"
                    " worker_max_connections: a tenant whose workers hang holds at most this many connections,"
                    " and the rest of the pool stays free for the other tenants.")
    retry_after_seconds: int = Field(default=2, ge=1, description="Retry-After on 429/503.")
    webhook_max_age_seconds: int = Field(default=300, ge=10,
                                         description="Webhook events older than this are refused as replays.")
    load_poll_seconds: float = Field(default=5.0, gt=0, description="How often worker load hints are refreshed.")
    livekit_probe_seconds: float = Field(default=1.0, gt=0, description="How often each region's LiveKit is probed"
                                                                      " (GET of its HTTP root).")
    livekit_probe_timeout_seconds: float = Field(default=2.0, gt=0, description="One LiveKit probe's timeout.")
    livekit_down_after_failures: int = Field(
        default=3, ge=1, le=100, description="Failed probes in a row before a region's LiveKit counts as down (no"
                                             " sessions placed there); one answer brings it back.")
    stale_watch_ready_seconds: float = Field(
        default=300.0, ge=0,
        description="How long /readyz stays ready on cached copies while a watch of the apiserver is broken: the"
                    " gateway keeps placing sessions from them through an apiserver outage, but past this a"
                    " replica cut off from the apiserver (whose copies may still hold a revoked API key) leaves"
                    " the load balancer's rotation.")
    access_log: bool = Field(default=False, description="One log line per request (route templates only, never"
                                                        " query strings or headers).")
    prices: PriceList = Field(
        default_factory=PriceList,
        description="The platform's price list (JSON, camelCase names; the chart's gateway.prices): what a call costs"
                    " the tenant, in micro-units of one currency (gateway/pricing.py). Cost in reports and"
                    " GET /v1/usage, and quotas.monthlySpendCents, are priced with it.")
    database_url: SecretStr | None = Field(
        default=None,
        description="The store (call history, webhook outbox, usage): postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB"
                    " (VOXFLEET_DATABASE_URL; the chart takes it from a Secret). Unset: every endpoint that needs it"
                    " answers 503 database_not_configured, everything else works as without it. Never logged.")
    database_pool_size: int = Field(default=10, ge=1, le=200, description="Connections each replica keeps open.")
    database_max_overflow: int = Field(default=10, ge=0, le=200,
                                       description="Connections opened beyond the pool under load, then closed.")
    database_pool_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="How long a request waits for a free connection before its 503.")
    database_statement_timeout_ms: int = Field(default=30_000, ge=100, le=600_000,
                                               description="No statement of the gateway runs longer.")
    database_probe_seconds: float = Field(default=2.0, gt=0, description="How often the database is probed for"
                                                                         " /readyz and voxfleet_gateway_database_up.")
    history_sweep_seconds: float = Field(
        default=300.0, gt=0, description="How often a gateway tries to sweep call records past their tenant's"
                                         " retention (one replica at a time: an advisory lock).")
    history_sweep_batch: int = Field(default=1000, ge=1, le=100000,
                                     description="Records deleted per transaction by the retention sweeper.")
    call_report_sweep_seconds: float = Field(
        default=15.0, gt=0, description="How often each gateway walks the live call records for calls that ended"
                                        " (their worker's report is pulled) or whose worker is gone.")
    call_report_lost_after_seconds: float = Field(
        default=150.0, gt=0, description="A live call no worker has known for this long, with no recovery running,"
                                         " is ended as worker-lost (longer than any recovery deadline).")
    playground_dir: Path | None = Field(
        default_factory=lambda: _SOURCE_PLAYGROUND if _SOURCE_PLAYGROUND.is_dir() else None,
        description="The built browser playground, served at /playground/ (default: playground/dist of a source"
                    " checkout, when built).")

    @field_validator("session_signing_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("session_signing_key must have at least 32 characters")
        return value

    @model_validator(mode="after")
    def _fair_share_below_pool(self) -> "GatewaySettings":
        if self.worker_calls_per_tenant >= self.worker_max_connections:
            raise ValueError(f"worker_calls_per_tenant ({self.worker_calls_per_tenant}) must be below"
                             f" worker_max_connections ({self.worker_max_connections}), or one tenant's hung"
                             " workers can hold every connection to workers")
        return self

    @model_validator(mode="after")
    def _separate_operational_port(self) -> "GatewaySettings":
        if self.operational_port and self.operational_port == self.port:
            raise ValueError(f"operational_port must differ from port ({self.port}): /metrics must not be served"
                             " on the tenant API port")
        return self

    @model_validator(mode="after")
    def _known_default_region(self) -> "GatewaySettings":
        if self.default_caller_region and self.regions and self.default_caller_region not in self.regions \
                and self.default_caller_region not in self.latency_ms:
            raise ValueError(f"default_caller_region {self.default_caller_region!r} is neither a served region"
                             " nor a row of latency_ms")
        return self

    def load_database_url(self) -> str | None:
        """The store's URL, checked; None when none is configured. Checked here rather than by a validator: a
        pydantic ValidationError repeats the input value, and this one holds the password."""
        if self.database_url is None or not self.database_url.get_secret_value():
            return None
        from voxfleet.store.database import DatabaseUrlError, parse_url

        try:
            return parse_url(self.database_url.get_secret_value()).render_as_string(hide_password=False)
        except DatabaseUrlError as error:
            raise RuntimeError(f"VOXFLEET_DATABASE_URL: {error}") from None

    def load_session_keys(self) -> list[bytes]:
        """The signing key first, then the older ones that still verify."""
        if self.session_signing_key is not None:
            key = self.session_signing_key.get_secret_value()
        elif self.session_signing_key_file is not None:
            key = self.session_signing_key_file.read_text().strip()
        else:
            raise RuntimeError("no session signing key: set VOXFLEET_SESSION_SIGNING_KEY or"
                               " VOXFLEET_SESSION_SIGNING_KEY_FILE (the same on every gateway replica)")
        if len(key) < 32:
            raise RuntimeError("the session signing key must have at least 32 characters")
        return [key.encode()] + [old.get_secret_value().encode() for old in self.previous_session_signing_keys]
