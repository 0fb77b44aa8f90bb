"""The Tenant resource (cluster-scoped): a customer of the platform, its namespace, people and quotas."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from voxfleet.api.common import Condition, check_condition_types_unique, condition_list
from voxfleet.api.model_base import DNS_LABEL, ApiModel, cel, validations
from voxfleet.api.voiceagent import QUANTITY

KIND = "Tenant"
PLURAL = "tenants"

# Room names are <tenant>.<agent>.<rest> (voxfleet.api.room_names): a dot in a Tenant's name would make one
# tenant's rooms parse as another's. The apiserver allows dots in cluster-scoped names, so the CRD refuses them.
NAME_RULE = cel("size(self.metadata.name) <= 63 && self.metadata.name.matches('" + DNS_LABEL + "')",
                "metadata.name must be a DNS label: at most 63 lowercase letters, digits and '-', no dots (room"
                " names are <tenant>.<agent>.<rest>, so a dot would make them ambiguous across tenants); choose"
                " a name like acme-eu", ".metadata.name", "FieldValueInvalid")


def _quantity(default: str, description: str) -> Any:
    return Field(default=default, max_length=32, pattern=QUANTITY, description=description)


class Quotas(ApiModel):
    """Upper bounds for everything the tenant can consume."""

    max_concurrent_sessions: int = Field(default=20, ge=0, le=100000, description="Calls in progress at once.")
    max_agents: int = Field(default=10, ge=0, le=1000, description="VoiceAgents in the tenant's namespace.")
    max_workers: int = Field(default=20, ge=0, le=10000, description="Worker pods over all agents and regions.")
    cpu: str = _quantity("20", "CPU of all worker pods together (their requests and their limits each), e.g. 20"
                               " or 8500m: the namespace's ResourceQuota. A pool that would exceed it gets no more"
                               " workers and its VoiceAgent reports QuotaExceeded.")
    memory: str = _quantity("40Gi", "Memory of all worker pods together (requests and limits each), e.g. 40Gi:"
                                    " the namespace's ResourceQuota.")
    max_worker_cpu: str = _quantity("4", "The most CPU one worker container may ask for or be limited to (the"
                                         " namespace's LimitRange); a VoiceAgent asking for more gets no pod and"
                                         " reports QuotaExceeded.")
    max_worker_memory: str = _quantity("8Gi", "The most memory one worker container may ask for or be limited"
                                              " to (the namespace's LimitRange).")
    monthly_minutes: int | None = Field(default=None, ge=0, le=100_000_000,
                                        description="Call minutes per calendar month (UTC) over all agents; a"
                                                    " session create past it is refused with 429 naming this"
                                                    " limit and when it resets. Unset: no limit.")
    monthly_spend_cents: int | None = Field(default=None, ge=0, le=10_000_000_000,
                                            description="Spend per calendar month (UTC) in cents of the"
                                                        " platform's currency, priced by the platform's price"
                                                        " list; a session create past it is refused with 429."
                                                        " Unset: no limit.")


class History(ApiModel):
    """What the platform keeps of the tenant's calls (reports, transcripts) and for how long."""

    retention_days: int = Field(default=30, ge=1, le=3650,
                                description="Days a call's record (its report and transcript) is kept after the"
                                            " call started; older records are deleted from the database.")


class TenantSpec(ApiModel):
    """Who the tenant is, where its agents live and run, and what it may use."""

    model_config = {"json_schema_extra": validations(
        cel("!has(oldSelf.namespace) || has(self.namespace)", "namespace cannot be changed once set",
            ".namespace", "FieldValueForbidden"))}

    display_name: str = Field(default="", max_length=128, description="Human-readable name.")
    namespace: str | None = Field(default=None, min_length=1, max_length=63, pattern=DNS_LABEL,
                                  description="Namespace of the tenant's VoiceAgents (default: tenant-<name>)."
                                              " Cannot be changed once set.",
                                  json_schema_extra=validations(cel("self == oldSelf",
                                                                    "namespace cannot be changed once set")))
    groups: list[str] = Field(default_factory=list, max_length=32,
                              description="Identity groups allowed to manage VoiceAgents in the namespace.",
                              json_schema_extra={"items": {"type": "string", "minLength": 1, "maxLength": 256},
                                                 "x-kubernetes-list-type": "set"})
    allowed_regions: list[str] = Field(min_length=1, max_length=16,
                                       description="Regions the tenant's agents may run in.",
                                       json_schema_extra={"items": {"type": "string", "pattern": DNS_LABEL,
                                                                    "maxLength": 63},
                                                          "x-kubernetes-list-type": "set"})
    quotas: Quotas = Field(default_factory=Quotas, description="Resource quotas.")
    history: History = Field(default_factory=History, description="Call history retention.")

    @model_validator(mode="after")
    def _unique(self) -> "TenantSpec":
        for what, items in (("groups", self.groups), ("allowedRegions", self.allowed_regions)):
            if len(set(items)) != len(items):
                raise ValueError(f"{what} must not repeat an entry")
        return self

    def namespace_for(self, tenant_name: str) -> str:
        return self.namespace or f"tenant-{tenant_name}"


class TenantStatus(ApiModel):
    observed_generation: int | None = Field(default=None, ge=0, description="The spec generation last reconciled.")
    namespace: str = Field(default="", description="The namespace the operator manages for the tenant.")
    agents: int = Field(default=0, ge=0, description="VoiceAgents in the namespace.")
    conditions: list[Condition] = condition_list("Ready and Degraded, one entry per type.")

    _unique_condition_types = field_validator("conditions")(check_condition_types_unique)


class Tenant(ApiModel):
    """A customer of the platform."""

    model_config = {"extra": "ignore"}

    api_version: Literal["voxfleet.dev/v1alpha1"] = Field(default="voxfleet.dev/v1alpha1")
    kind: Literal["Tenant"] = Field(default="Tenant")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: TenantSpec
    status: TenantStatus | None = None


