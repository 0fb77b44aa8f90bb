"""The OTEL resource every voxfleet process describes itself with: service names, attribute keys, and the
OTEL_RESOURCE_ATTRIBUTES text that carries them (the chart writes the gateway's and the operator's, the operator
writes each worker's).

OTEL_RESOURCE_ATTRIBUTES is `key=value,key=value` with percent-encoded values (the SDK splits on "," and the first
"=", then URL-decodes each value). Values are encoded here, so a comma, an "=" or a kubelet `$(VAR)` reference in a
value stays a literal and can't add or change an attribute. The pod's own name and namespace come from the
downward API as `$(VAR)` references the kubelet expands; those are the only unencoded parts, and they come last so
no platform extra can shadow them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

SERVICE_GATEWAY = "voxfleet-gateway"
SERVICE_OPERATOR = "voxfleet-operator"
SERVICE_WORKER = "voxfleet-worker"

# OpenTelemetry semantic conventions (k8s.*) and voxfleet's own (voxfleet.*).
K8S_NAMESPACE = "k8s.namespace.name"
K8S_POD = "k8s.pod.name"
TENANT = "voxfleet.tenant"
AGENT = "voxfleet.agent"
REGION = "voxfleet.region"
# Keys each process sets itself: a platform's extra attributes may not name them (service.name is OTEL_SERVICE_NAME).
IDENTITY_KEYS = frozenset({"service.name", K8S_NAMESPACE, K8S_POD, TENANT, AGENT, REGION})

# A key is never encoded (the SDK doesn't decode keys), so it must be plain.
KEY = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,127}$")


def check_extra_attributes(attributes: Mapping[str, str]) -> None:
    """A platform's extra attributes (deployment.environment, k8s.cluster.name, ...): plain keys, none of ours."""
    for key in attributes:
        if not KEY.match(key):
            raise ValueError(f"resource attribute key {key!r} must match {KEY.pattern}")
        if key in IDENTITY_KEYS:
            raise ValueError(f"resource attribute {key!r} is set by each component itself")


def encode(attributes: Mapping[str, str]) -> str:
    """`key=value,...` with every value percent-encoded (nothing in it is read as a separator or a `$(VAR)`)."""
    for key in attributes:
        if not KEY.match(key):
            raise ValueError(f"resource attribute key {key!r} must match {KEY.pattern}")
    return ",".join(f"{key}={quote(str(value), safe='')}" for key, value in attributes.items())


def with_pod_identity(encoded: str, *, pod_name_var: str, namespace_var: str) -> str:
    """``encoded`` followed by the pod's name and namespace as kubelet `$(VAR)` references to downward-API env."""
    pod = f"{K8S_NAMESPACE}=$({namespace_var}),{K8S_POD}=$({pod_name_var})"
    return f"{encoded},{pod}" if encoded else pod
