"""Small types several resources share: secret references and status conditions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from voxfleet.api.model_base import ApiModel

SECRET_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"


class SecretKeyRef(ApiModel):
    """A key of a Secret in the agent's own namespace. Values never leave the Secret: pods read them as env."""

    name: str = Field(description="Name of the Secret, in the VoiceAgent's namespace.", min_length=1,
                      max_length=253, pattern=SECRET_NAME)
    key: str = Field(description="Key inside the Secret's data.", min_length=1, max_length=253, pattern=SECRET_KEY)


# The shape of metav1.Condition (k8s.io/apimachinery), field for field, so kubectl, kstatus-style tools and
# `kubectl wait --for=condition=Ready` read our status as they read any built-in resource's.
CONDITION_TYPE = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                  r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$")
CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
MAX_CONDITIONS = 16


class Condition(ApiModel):
    """One aspect of the resource's state, in the standard Kubernetes shape (metav1.Condition)."""

    type: str = Field(description="Condition type in CamelCase, e.g. Ready, Progressing, Degraded.", min_length=1,
                      max_length=316, pattern=CONDITION_TYPE)
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: int | None = Field(default=None, ge=0,
                                            description="The metadata.generation this condition was set for: older"
                                                        " than the object's, the condition is out of date.")
    last_transition_time: datetime = Field(description="When status last changed from one value to another.")
    reason: str = Field(description="Why the condition is in its status: a CamelCase word programs may match on.",
                        min_length=1, max_length=1024, pattern=CONDITION_REASON)
    message: str = Field(description="Human-readable details of the transition (may be empty).", max_length=32768)


def condition_list(description: str) -> Any:
    """A status `conditions` list: a map keyed by type (one entry per type; server-side apply merges by type)."""
    return Field(default_factory=list, max_length=MAX_CONDITIONS, description=description,
                 json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})


def check_condition_types_unique(conditions: list[Condition]) -> list[Condition]:
    seen: set[str] = set()
    for condition in conditions:
        if condition.type in seen:
            raise ValueError(f"conditions: type {condition.type!r} appears twice (one entry per type)")
        seen.add(condition.type)
    return conditions
