"""The base every voxfleet contract model shares: camelCase on the wire, unknown fields refused."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Kubernetes-style model: camelCase JSON names, snake_case Python names, no unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON body other components read (aliases, defaults left out only when None)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """One CEL rule for `x-kubernetes-validations`; the apiserver enforces it, the message names the field."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if reason:
        entry["reason"] = reason
    return entry


def validations(*rules: dict[str, Any]) -> dict[str, Any]:
    """json_schema_extra carrying CEL rules into the generated CRD."""
    return {"x-kubernetes-validations": list(rules)}


# A Kubernetes object name (DNS-1123 label), the form region, agent and tool-adjacent names take.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def name_field(description: str, max_length: int = 63) -> Any:
    return Field(description=description, min_length=1, max_length=max_length, pattern=DNS_LABEL)
