"""The gateway's Prometheus metrics (one registry per app, so several gateways in one test process stay apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from voxfleet.telemetry.build_info import register_standard_metrics

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        register_standard_metrics(r, "gateway")
        self.allocations = Counter(
            "voxfleet_gateway_allocations", "Session allocations by outcome (ok, no_capacity, quota, error).",
            ["tenant", "agent", "region", "result"], registry=r)
        self.allocation_seconds = Histogram(
            "voxfleet_gateway_allocation_seconds", "Time to allocate a session: placement, slot claim, tokens.",
            ["tenant", "agent", "region", "result"], buckets=_LATENCY_BUCKETS, registry=r)
        self.dispatch_seconds = Histogram(
            "voxfleet_gateway_dispatch_seconds", "One POST /v1/dispatch to a worker, by answer.",
            ["region", "answer"], buckets=_LATENCY_BUCKETS, registry=r)
        self.dispatch_attempts = Histogram(
            "voxfleet_gateway_dispatch_attempts", "Workers tried per allocation.", ["region"],
            buckets=(1, 2, 3, 4, 6, 10, 20), registry=r)
        # One per lost call: who took it over (same_region, restarted_worker, other_region) or why nobody did
        # (gave_up: no worker within the agent's recovery deadline; no_caller; no_agent). region: the room's.
        self.recoveries = Counter(
            "voxfleet_gateway_session_recoveries", "Lost workers' calls by recovery outcome.",
            ["tenant", "agent", "region", "outcome"], registry=r)
        self.recovery_seconds = Histogram(
            "voxfleet_gateway_session_recovery_seconds",
            "From a worker's loss seen to the call's new agent dispatched (or to giving up), by outcome.",
            ["tenant", "agent", "region", "outcome"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0), registry=r)
        self.webhooks = Counter(
            "voxfleet_gateway_webhooks", "LiveKit webhook events by event and outcome.", ["event", "result"],
            registry=r)
        self.auth_failures = Counter(
            "voxfleet_gateway_auth_failures", "Refused API keys by reason.", ["reason"], registry=r)
        self.rate_limited = Counter(
            "voxfleet_gateway_rate_limited", "Requests refused by the tenant rate limit.", ["tenant"], registry=r)
        self.requests = Counter(
            "voxfleet_gateway_http_requests", "HTTP requests by route, method and status.",
            ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram(
            "voxfleet_gateway_http_request_seconds", "HTTP request latency by route.", ["route", "method"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.workers = Gauge(
            "voxfleet_gateway_workers", "Worker pods the gateway sees, by tenant, agent, region and readiness.",
            ["tenant", "agent", "region", "ready"], registry=r)
        # Usage as billed: counted when a call's end is recorded in the database (gateway/call_reports.py), priced
        # by the gateway's price list (gateway/pricing.py); the same figures as GET /v1/usage, for dashboards.
        self.call_seconds = Counter(
            "voxfleet_gateway_call_seconds", "Call time of ended sessions as billed, by tenant and agent.",
            ["tenant", "agent"], registry=r)
        self.call_cost_micros = Counter(
            "voxfleet_gateway_call_cost_micros",
            "Cost of ended sessions in micro-units of the price list's currency, by tenant and agent.",
            ["tenant", "agent"], registry=r)
        # What became of the end of each call (gateway/call_reports.py): stored from its worker's report, ended from
        # the gateway's own facts (no worker had a usable report), or a worker's report refused by the checks.
        self.call_reports = Counter(
            "voxfleet_gateway_call_reports",
            "Ends of calls recorded, by tenant and outcome: ended (the worker's report stored), worker_lost (no"
            " usable report: ended from the gateway's facts), refused (a worker's report failed the checks).",
            ["tenant", "outcome"], registry=r)
        self.monthly_limit_refusals = Counter(
            "voxfleet_gateway_monthly_limit_refusals",
            "Session creates refused because the tenant reached a monthly limit (quotas.monthlyMinutes or"
            " quotas.monthlySpendCents), by tenant and limit.", ["tenant", "limit"], registry=r)

    def count_call_usage(self, *, tenant: str, agent: str, call_ms: int, cost_micros: int) -> None:
        """One ended call's billed time and cost; call it once the transaction that recorded them committed."""
        self.call_seconds.labels(tenant=tenant, agent=agent).inc(call_ms / 1000)
        self.call_cost_micros.labels(tenant=tenant, agent=agent).inc(cost_micros)
