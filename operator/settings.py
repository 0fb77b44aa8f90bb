"""Operator-only settings (env prefix VOXFLEET_OPERATOR_): how often demand is polled, how reconciles retry,
how the leader Lease is held and where health and metrics are served. Platform-wide choices (worker image,
placement, token) stay in voxfleet.api.settings.PlatformSettings."""

from __future__ import annotations

import os
import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_identity() -> str:
    # In a cluster the Downward API sets POD_NAME; elsewhere host and pid tell two replicas apart.
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOXFLEET_OPERATOR_", extra="ignore")

    # Demand polling (GET /v1/load on every worker pod).
    poll_interval_seconds: float = Field(default=2.0, gt=0, le=60, description="Seconds between load polls.")
    poll_timeout_seconds: float = Field(default=1.0, gt=0, le=30, description="Timeout of one /v1/load request.")
    poll_concurrency: int = Field(default=256, ge=1, le=4096, description="Load requests in flight at once.")
    stale_report_seconds: float = Field(
        default=10.0, gt=0, description="A worker's last report counts this long after its polls start failing.")
    status_min_interval_seconds: float = Field(
        default=2.0, ge=0, description="At most one status write per agent this often (changes are coalesced).")
    status_figures_interval_seconds: float = Field(
        default=5.0, ge=0, description="Changes of figures alone (ready workers, sessions, free slots; no condition"
                                       " changed) reach status at most this often per agent.")
    status_wording_delay_seconds: float = Field(
        default=10.0, ge=0, description="A change of a condition's message alone (no figure, status or reason"
                                        " changed) waits this long from when it is first seen, so that the next"
                                        " change (another region settling, the agent Ready) carries it.")

    # Scope. Empty: every Tenant. Set: only Tenants with these labels (and the VoiceAgents in their namespaces);
    # other agents are left alone for another operator instance (tests sharing one cluster, canaries).
    tenant_selector: str = Field(default="", max_length=1024, description="Label selector for Tenants to serve.")

    # Reconciling.
    reconcile_workers: int = Field(
        default=48, ge=1, le=256,
        description="Reconciles running at once (each mostly waits on the apiserver: many in flight keep it fed).")
    retry_min_seconds: float = Field(default=1.0, gt=0, description="First retry delay after a failed reconcile.")
    retry_max_seconds: float = Field(default=60.0, gt=0, description="Longest retry delay.")
    recheck_seconds: float = Field(
        default=15.0, gt=0, description="Recheck delay for problems the operator can't watch (a missing Secret).")
    resync_seconds: float = Field(default=3600.0, gt=0,
                                  description="Re-send everything this often anyway (watches catch drift sooner).")
    grace_margin_seconds: int = Field(
        default=30, ge=0, le=3600, description="Added to maxSessionSeconds for terminationGracePeriodSeconds.")

    # Two replicas never fight: only the holder of this Lease (in the platform namespace) reconciles.
    lease_name: str = Field(default="voxfleet-operator", description="Lease of the active replica.")
    lease_duration_seconds: float = Field(default=15.0, gt=0, description="A Lease not renewed this long is free.")
    lease_renew_seconds: float = Field(default=5.0, gt=0, description="How often the holder renews it.")
    identity: str = Field(default_factory=_default_identity, description="This replica's Lease holder identity.")

    # Health and metrics (one HTTP server).
    http_host: str = Field(default="0.0.0.0", description="Address of the health and metrics server.")
    http_port: int = Field(default=8081, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics"
                                                                       " (0: pick a free one).")
    # Fault injection for crash tests: SIGKILL this process right after its Nth write to the apiserver (0: off),
    # so a test can stop a reconcile at an exact point and check that a restarted operator converges.
    crash_after_writes: int = Field(default=0, ge=0, description="Crash tests only: die after this many writes.")
    crash_write_pattern: str = Field(default="", max_length=256,
                                     description="Crash tests only: count only writes whose 'METHOD path' matches"
                                                 " this regular expression (empty: every write).")

    # Least privilege: the operator holds no cluster-wide Secret rights. In each tenant namespace it binds these
    # ClusterRoles (the chart makes them, and lets the operator bind exactly these two by name): its own rights
    # there (Secrets' keys and labels, the worker-token Secret) and the gateway's (the tenant secrets API).
    tenant_cluster_role: str = Field(default="voxfleet-operator-tenant", min_length=1, max_length=253,
                                     description="ClusterRole bound to the operator in each tenant namespace.")
    service_account: str = Field(default="voxfleet-operator", min_length=1, max_length=253,
                                 description="The operator's ServiceAccount (in the platform namespace).")
    gateway_secrets_cluster_role: str = Field(
        default="voxfleet-gateway-tenant-secrets", min_length=1, max_length=253,
        description="ClusterRole bound to the gateway in each tenant namespace (tenant Secrets).")
    gateway_service_account: str = Field(default="voxfleet-gateway", min_length=1, max_length=253,
                                         description="The gateway's ServiceAccount (in the platform namespace).")

    install_admission_policy: bool = Field(
        default=True, description="Apply the ValidatingAdmissionPolicy that refuses deleting Tenants with agents.")
