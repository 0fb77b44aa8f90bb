"""Platform settings (env prefix VOXFLEET_), shared by operator, gateway and workers.

These are the platform team's choices, never a tenant's: the worker image and its allow-list, the worker
token, where worker pods may run, which private networks outbound calls may still reach, and the telemetry
wiring (where OTLP goes, how traces are sampled, which namespace monitors the platform).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Literal

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from voxfleet.telemetry.resource_attributes import check_extra_attributes

ENV_PREFIX = "VOXFLEET_"


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    platform_namespace: str = Field(default="voxfleet-system",
                                    description="Namespace of the operator, gateway and the worker-token Secret.")
    worker_image: str = Field(default="voxfleet/voxfleet:0.1.0", description="Image every worker pool runs.")
    allowed_worker_images: list[str] = Field(
        default_factory=list,
        description="Glob patterns a VoiceAgent's spec.worker.image must match to be used (empty: none allowed).")
    worker_command: list[str] = Field(default_factory=lambda: ["voxfleet", "worker"],
                                      description="Container command of worker pods.")
    worker_port: int = Field(default=8080, ge=1, le=65535, description="Worker control/metrics port.")
    worker_service_account: str = Field(default="voxfleet-worker", description="Service account of worker pods.")
    worker_node_selector: dict[str, str] = Field(default_factory=dict,
                                                 description="nodeSelector for every worker pod (voice node pool).")
    worker_tolerations: list[dict[str, Any]] = Field(default_factory=list,
                                                     description="Tolerations for every worker pod.")
    worker_token: SecretStr | None = Field(default=None, description="The worker control API token.")
    worker_token_file: Path | None = Field(default=None, description="File holding the worker token (mounted Secret).")
    worker_token_secret: str = Field(default="voxfleet-worker-token",
                                     description="Secret (key `token`) that holds the worker token.")
    outbound_allowed_cidrs: list[str] = Field(
        default_factory=list,
        description="Private/loopback networks outbound tenant URLs may still reach (tests: 127.0.0.1/32).")
    log_format: Literal["json", "console"] = Field(default="json", description="structlog renderer.")
    log_level: str = Field(default="info", description="Minimum log level.")
    telemetry_otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP base URL of the collector (http://otel-collector.monitoring:4318): the exporters append "
                    "/v1/traces. Workers get it as OTEL_EXPORTER_OTLP_ENDPOINT. None: spans stay in the process.")
    telemetry_otlp_protocol: Literal["http/protobuf", "grpc"] = Field(
        default="http/protobuf", description="OTEL_EXPORTER_OTLP_PROTOCOL of the workers.")
    telemetry_traces_sampler: str = Field(
        default="parentbased_traceidratio",
        description="OTEL_TRACES_SAMPLER of the workers (parent-based: a call's worker spans follow the gateway's "
                    "decision, so a trace is whole or absent).")
    telemetry_traces_sampler_arg: str = Field(default="1.0", description="OTEL_TRACES_SAMPLER_ARG (the ratio).")
    telemetry_resource_attributes: dict[str, str] = Field(
        default_factory=dict,
        description="Extra OTEL resource attributes of every component (deployment.environment, k8s.cluster.name).")
    monitoring_namespace: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="Namespace of the platform's Prometheus and OTEL collector: tenant NetworkPolicies let it scrape "
                    "the worker metrics port and let workers send OTLP to it. None: neither path is opened.")

    @field_validator("telemetry_otlp_endpoint")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"OTLP endpoint {value!r} must be an http(s) base URL")
        return value

    @field_validator("telemetry_resource_attributes")
    @classmethod
    def _plain_extra_attributes(cls, value: dict[str, str]) -> dict[str, str]:
        check_extra_attributes(value)
        return value

    def otlp_port(self) -> int | None:
        """The collector's port workers' egress must reach (the URL's, else the scheme's default)."""
        if not self.telemetry_otlp_endpoint:
            return None
        parts = urlsplit(self.telemetry_otlp_endpoint)
        return parts.port or (443 if parts.scheme == "https" else 80)

    def load_worker_token(self) -> str:
        """The worker token, from the setting or the mounted Secret file; a clear error when neither is set."""
        if self.worker_token is not None:
            return self.worker_token.get_secret_value()
        if self.worker_token_file is not None:
            return self.worker_token_file.read_text().strip()
        raise RuntimeError(f"no worker token: set {ENV_PREFIX}WORKER_TOKEN or {ENV_PREFIX}WORKER_TOKEN_FILE")

    def image_allowed(self, image: str) -> bool:
        return image == self.worker_image or any(fnmatch.fnmatchcase(image, pattern)
                                                 for pattern in self.allowed_worker_images)
