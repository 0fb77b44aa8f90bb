"""Small types several resources share: secret references and status conditions."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from voxfleet.api.model_base import ApiModel

SECRET_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"


class SecretKeyRef(ApiModel):
    """A key of a Secret in the agent's own namespace. Values never leave the Secret: pods read them as env."""

    name: str = Field(description="Name of the Secret, in the VoiceAgent's namespace.", min_length=1,
                      max_length=253, pattern=SECRET_NAME)
    key: str = Field(description="Key inside the Secret's data.", min_length=1, max_length=253, pattern=SECRET_KEY)


class Condition(ApiModel):
    """A standard Kubernetes condition (type, status, reason, message, lastTransitionTime)."""

    type: str = Field(description="Condition type, e.g. Ready, Progressing, Degraded.", max_length=64)
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase reason for the last transition.", max_length=128)
    message: str = Field(default="", description="Human-readable details.", max_length=2048)
    last_transition_time: datetime | None = Field(default=None, description="When status last changed.")
    observed_generation: int | None = Field(default=None, description="The generation this condition was set for.",
                                            ge=0)
