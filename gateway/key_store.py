"""The gateway's view of tenant API keys: the hashes from the key Secrets, kept current by a watch.

A revoked key is a deleted Secret; the watch removes it from this index the moment the apiserver reports the
deletion, so every replica refuses the key within the watch's latency (milliseconds), with no cache TTL.
A key the watch has not shown yet (made a moment ago) is read through from the apiserver within a budget
(gateway/read_through.py); what is read that way is used for that request only and never cached, so a
revocation the watch reports is never undone by an older read.
"""

from __future__ import annotations

from typing import Any

import structlog

from voxfleet.api import labels
from voxfleet.gateway import api_keys
from voxfleet.gateway.read_through import ReadThroughBudget
from voxfleet.kube.client import KubeClient
from voxfleet.kube.informer import Informer, InformerEvent

log = structlog.get_logger(__name__)


class KeyStore:
    def __init__(self, kube: KubeClient, namespace: str, read_through: ReadThroughBudget | None = None):
        self._kube, self._namespace = kube, namespace
        self._read_through = read_through or ReadThroughBudget()
        self.read_throughs: dict[str, int] = {"found": 0, "missing": 0, "over_budget": 0, "failed": 0}
        self.cache: Informer[dict[str, Any]] = Informer(kube, "Secret", namespace=namespace,
                                                        label_selector=api_keys.KEY_SECRET_SELECTOR,
                                                        name="api-key secrets")
        self._by_id: dict[str, api_keys.StoredKey] = {}
        self.cache.add_handler(self._on_change)

    def _on_change(self, event: InformerEvent[dict[str, Any]]) -> None:
        new, old = event.new, event.old
        if old is not None:
            stale = api_keys.from_secret(old)
            if stale is not None and self._by_id.get(stale.key_id) == stale:
                del self._by_id[stale.key_id]
        if new is not None:
            stored = api_keys.from_secret(new)
            if stored is not None:
                self._by_id[stored.key_id] = stored

    async def authenticate(self, presented: str) -> api_keys.StoredKey | None:
        """The stored key the presented one matches, or None (malformed, unknown or revoked alike)."""
        parsed = api_keys.parse(presented)
        if parsed is None:
            return None
        key_id, key = parsed
        stored = self._by_id.get(key_id) or await self._read(key_id)
        if stored is None:
            api_keys.matches(key, "0" * 64)  # same work for unknown ids as for known ones
            return None
        return stored if api_keys.matches(key, stored.hex_digest) else None

    async def _read(self, key_id: str) -> api_keys.StoredKey | None:
        """The key Secret of an id the watch has not shown, straight from the apiserver (within the budget)."""
        if not self._read_through.may_ask(key_id):
            self.read_throughs["over_budget"] += 1
            return None
        try:
            secret = await self._kube.get_or_none("Secret", api_keys.secret_name(key_id), self._namespace)
        except Exception as error:  # noqa: BLE001 - any failure to read leaves the key unknown, as before
            self.read_throughs["failed"] += 1
            log.warning("could not read an api-key secret through", error=type(error).__name__)
            return None
        stored = api_keys.from_secret(secret) if secret is not None and _is_key_secret(secret) else None
        if stored is None or stored.key_id != key_id:
            self._read_through.missing(key_id)
            self.read_throughs["missing"] += 1
            return None
        self.read_throughs["found"] += 1
        return stored


def _is_key_secret(secret: dict[str, Any]) -> bool:
    """What the watch's label selector would have admitted (a GET by name does not apply it)."""
    secret_labels = (secret.get("metadata") or {}).get("labels") or {}
    return (secret_labels.get(labels.NAME) == labels.PART_OF_VALUE
            and secret_labels.get(labels.COMPONENT) == api_keys.COMPONENT)
