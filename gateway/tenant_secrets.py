"""Tenant secrets as Kubernetes Secrets: what marks one as the tenant's, what a tenant may name and store, and
the views that leave the gateway (names, keys and times; never values).

A tenant secret is a Secret in the tenant's namespace labelled voxfleet.api.labels.TENANT_SECRET="true", written
only through the gateway's secrets API. Any other Secret in that namespace (the platform's worker credential,
service-account tokens, something an admin put there) is not the tenant's: the API neither reads, replaces
nor deletes it, and a VoiceAgent spec may not reference it.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from voxfleet.api import labels
from voxfleet.api.common import SECRET_KEY
from voxfleet.api.model_base import ApiModel
from voxfleet.kube.client import KubeClient

# Kubernetes caps a Secret at 1 MiB; a tenant's provider keys and tool credentials are a few hundred bytes
# each, so far less is plenty, and a small cap keeps every worker's env (and etcd) small.
MAX_KEYS = 64
MAX_TOTAL_BYTES = 64 * 1024  # key names + values, UTF-8
MAX_NAME_LENGTH = 253
# DNS-1123 subdomain: what Kubernetes accepts as a Secret name.
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
RESERVED_PREFIX = "voxfleet-"  # the platform's own Secrets in tenant namespaces (the worker credential)
UPDATED_AT = f"{labels.PREFIX}/updated-at"
MANAGER = "voxfleet-gateway"
SELECTOR = f"{labels.TENANT_SECRET}={labels.TENANT_SECRET_VALUE}"
SecretKeyName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=SECRET_KEY)]


class SecretWrite(ApiModel):
    """The body of PUT /v1/secrets/{name}: every key of the secret with its value (the whole secret is replaced)."""

    data: dict[SecretKeyName, str] = Field(
        min_length=1, max_length=MAX_KEYS,
        description=f"Key -> value (text). Keys as Kubernetes allows them ([-._a-zA-Z0-9]+, at most 253"
                    f" characters); at most {MAX_KEYS} keys and {MAX_TOTAL_BYTES // 1024} KiB of keys and values"
                    " together. Values are never returned, logged or echoed in errors.")


class SecretView(ApiModel):
    """A tenant secret as the API shows it: never its values."""

    name: str
    keys: list[str] = Field(description="The secret's keys, sorted (values are never returned).")
    created_at: datetime | None = None
    updated_at: datetime | None = Field(default=None, description="When the secret was last written.")


class SecretList(ApiModel):
    items: list[SecretView]


def is_tenant_secret(obj: dict[str, Any], tenant: str) -> bool:
    """Written through the secrets API for this tenant: the label is the mark, the tenant label says whose."""
    obj_labels = (obj.get("metadata") or {}).get("labels") or {}
    return obj_labels.get(labels.TENANT_SECRET) == labels.TENANT_SECRET_VALUE \
        and obj_labels.get(labels.TENANT) == tenant


def keys_of(obj: dict[str, Any]) -> set[str]:
    return set(obj.get("data") or {}) | set(obj.get("stringData") or {})


def view(obj: dict[str, Any]) -> SecretView:
    meta = obj.get("metadata") or {}
    updated = (meta.get("annotations") or {}).get(UPDATED_AT) or meta.get("creationTimestamp")
    return SecretView(name=meta.get("name", ""), keys=sorted(keys_of(obj)), created_at=meta.get("creationTimestamp"),
                      updated_at=updated)


def name_problem(name: str, reserved_names: set[str]) -> str | None:
    """Why a tenant may not use this Secret name, or None."""
    if len(name) > MAX_NAME_LENGTH or not DNS_SUBDOMAIN.match(name):
        return (f"must be a DNS-1123 subdomain of at most {MAX_NAME_LENGTH} characters (lowercase letters, digits,"
                " '-' and '.', starting and ending with a letter or digit)")
    if name.startswith(RESERVED_PREFIX) or name in reserved_names:
        return f"names starting with {RESERVED_PREFIX!r} are the platform's; choose another name"
    return None


def size_problem(data: dict[str, str]) -> str | None:
    total = sum(len(key.encode()) + len(value.encode()) for key, value in data.items())
    if total > MAX_TOTAL_BYTES:
        return (f"keys and values add up to {total} bytes, above the limit of {MAX_TOTAL_BYTES} bytes"
                f" ({MAX_TOTAL_BYTES // 1024} KiB); split them over several secrets")
    return None


def manifest(namespace: str, name: str, tenant: str, data: dict[str, str],
             resource_version: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name, "namespace": namespace,
        "labels": {labels.TENANT_SECRET: labels.TENANT_SECRET_VALUE, labels.TENANT: tenant,
                   labels.MANAGED_BY: MANAGER},
        "annotations": {UPDATED_AT: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")},
    }
    if resource_version:  # a replace applies only onto the version we checked was the tenant's
        meta["resourceVersion"] = resource_version
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta,
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}}


async def tenant_secret_keys(kube: KubeClient, namespace: str, tenant: str) -> dict[str, set[str]]:
    """Name -> keys of every tenant secret of this tenant in its namespace (values are dropped at once)."""
    listing = await kube.list("Secret", namespace, label_selector=SELECTOR)
    return {item["metadata"]["name"]: keys_of(item) for item in listing.get("items") or []
            if is_tenant_secret(item, tenant)}
