"""Who owns an object the operator writes: the labels that mark it as ours and the owner reference that makes
Kubernetes' garbage collector delete it with its Tenant or VoiceAgent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voxfleet.api import labels
from voxfleet.api.voiceagent import GROUP, VERSION

MANAGER = "voxfleet-operator"
MANAGED = {labels.MANAGED_BY: MANAGER}
# Every object the operator manages for a VoiceAgent carries this selector (the drift watch uses it).
MANAGED_SELECTOR = f"{labels.MANAGED_BY}={MANAGER}"


@dataclass(frozen=True)
class Owner:
    """A Tenant or VoiceAgent as an owner: enough of its metadata to reference it."""

    kind: str
    name: str
    uid: str
    namespace: str | None = None

    @classmethod
    def of(cls, body: dict[str, Any]) -> "Owner":
        meta = body["metadata"]
        return cls(kind=body["kind"], name=meta["name"], uid=meta["uid"], namespace=meta.get("namespace"))

    def reference(self) -> dict[str, Any]:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": self.kind, "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}


def agent_labels(tenant: str, agent: str) -> dict[str, str]:
    return {labels.NAME: labels.PART_OF_VALUE, labels.TENANT: tenant, labels.AGENT: agent, **MANAGED}


def pool_selector(tenant: str, agent: str, region: str) -> dict[str, str]:
    """The labels a pool's pods carry (and its Deployment selects on): the gateway's WORKER_SELECTOR plus the
    pool's identity."""
    return {labels.NAME: labels.PART_OF_VALUE, labels.COMPONENT: labels.WORKER_COMPONENT,
            labels.TENANT: tenant, labels.AGENT: agent, labels.REGION: region}


def metadata(name: str, namespace: str | None, object_labels: dict[str, str], owner: Owner | None,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(object_labels)}
    if namespace:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    if owner is not None:
        meta["ownerReferences"] = [owner.reference()]
    return meta
