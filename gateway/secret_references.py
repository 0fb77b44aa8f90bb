"""The admission rule for the Secrets a VoiceAgent spec names (voxfleet.api.spec_secrets finds them): only the
tenant's own secrets (written through PUT /v1/secrets/{name}), holding the named key.

So a spec naming the platform's worker credential, a service-account token or any Secret an admin put in the
namespace is refused when it is written, with the field that names it; the operator applies the same rule to
specs written with kubectl (its Degraded condition), and builds no pod with such a reference.
"""

from __future__ import annotations

from typing import Any

from voxfleet.api.common import SecretKeyRef
from voxfleet.api.spec_secrets import secret_references
from voxfleet.api.voiceagent import VoiceAgentSpec
from voxfleet.gateway.api_errors import ApiError
from voxfleet.gateway.tenant_secrets import tenant_secret_keys
from voxfleet.kube.client import KubeClient
from voxfleet.kube.errors import KubeApiError, NotFound


def reference_problems(references: list[tuple[str, SecretKeyRef]], secrets: dict[str, set[str]]
                       ) -> list[dict[str, Any]]:
    """Error details for each reference that is not a key of one of the tenant's secrets."""
    details = []
    for path, ref in references:
        keys = secrets.get(ref.name)
        if keys is None:
            details.append({"field": f"{path}.name",
                            "message": f"{ref.name!r} is not one of this tenant's secrets; write it with"
                                       f" PUT /v1/secrets/{ref.name} (only secrets written through the secrets"
                                       " API may be referenced)",
                            "reason": "SecretNotFound"})
        elif ref.key not in keys:
            details.append({"field": f"{path}.key",
                            "message": f"secret {ref.name!r} has no key {ref.key!r} (it has"
                                       f" {', '.join(sorted(keys)) or 'none'}); add it with"
                                       f" PUT /v1/secrets/{ref.name}",
                            "reason": "SecretKeyNotFound"})
    return details


async def check_secret_references(kube: KubeClient, namespace: str, tenant: str, spec: VoiceAgentSpec,
                                  retry_after_seconds: int) -> None:
    """422 naming every field whose Secret is not the tenant's or lacks the key; nothing when all are fine."""
    references = secret_references(spec)
    if not references:
        return
    try:
        secrets = await tenant_secret_keys(kube, namespace, tenant)
    except NotFound:
        secrets = {}  # the namespace is not there yet: no tenant secrets either
    except KubeApiError:
        raise ApiError(503, "secrets_unavailable", "The gateway could not read the tenant's secrets to check the"
                                                   " spec's references; try again shortly.",
                       headers={"Retry-After": str(retry_after_seconds)}) from None
    details = reference_problems(references, secrets)
    if details:
        raise ApiError(422, "secret_not_allowed", "The spec references Secrets that are not this tenant's secrets,"
                                                  " or keys they do not hold; see details. Write secrets with"
                                                  " PUT /v1/secrets/{name}.", details=details)
