"""Tenant API keys: their format, their hash, and the Secret that stores a key's hash (never the key).

A key reads ``vfk_<key id>_<secret>``. The key id is public (it names the Secret and shows up in
`voxfleet keys list`); the secret part is 256 random bits. Because the secret is random and long, one
SHA-256 is the right hash: slow password hashes protect guessable passwords, and would only cost every request.
The gateway looks a presented key up by its id and compares hashes with ``hmac.compare_digest``.

One Secret per key, in the platform namespace, labelled with the tenant: rotating means creating a second key
and revoking the first; revoking deletes the Secret, and every gateway replica's watch drops it at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from voxfleet.api import labels

KEY_PREFIX = "vfk"
COMPONENT = "api-key"
KEY_ID_LABEL = f"{labels.PREFIX}/api-key-id"
DESCRIPTION_ANNOTATION = f"{labels.PREFIX}/description"
CREATED_ANNOTATION = f"{labels.PREFIX}/created-at"
HASH_FIELD = "sha256"
SECRET_NAME_PREFIX = "voxfleet-api-key-"
# The gateway watches exactly these Secrets.
KEY_SECRET_SELECTOR = f"{labels.NAME}={labels.PART_OF_VALUE},{labels.COMPONENT}={COMPONENT}"

_KEY_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_KEY_SHAPE = re.compile(r"^vfk_([a-z2-7]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class NewKey:
    key_id: str
    plaintext: str  # shown once, then only its hash exists


def generate() -> NewKey:
    key_id = "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(12))
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return NewKey(key_id=key_id, plaintext=f"{KEY_PREFIX}_{key_id}_{secret}")


def parse(presented: str) -> tuple[str, str] | None:
    """(key id, the whole key) when the string has the shape of a key; None otherwise."""
    match = _KEY_SHAPE.match(presented)
    return (match.group(1), presented) if match else None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def matches(key: str, stored_hex_digest: str) -> bool:
    return hmac.compare_digest(digest(key).encode(), stored_hex_digest.encode())


def secret_name(key_id: str) -> str:
    return f"{SECRET_NAME_PREFIX}{key_id}"


def secret_manifest(*, tenant: str, key: NewKey, namespace: str, description: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(key.key_id),
            "namespace": namespace,
            "labels": {labels.NAME: labels.PART_OF_VALUE, labels.COMPONENT: COMPONENT,
                       labels.TENANT: tenant, KEY_ID_LABEL: key.key_id},
            "annotations": {DESCRIPTION_ANNOTATION: description,
                            CREATED_ANNOTATION: datetime.now(timezone.utc).isoformat(timespec="seconds")},
        },
        "stringData": {HASH_FIELD: digest(key.plaintext)},
    }


@dataclass(frozen=True)
class StoredKey:
    """What a key Secret says: whose key it is and the hash to compare with."""

    key_id: str
    tenant: str
    hex_digest: str
    description: str
    created_at: str
    secret_name: str


def from_secret(secret: dict[str, Any]) -> StoredKey | None:
    """The stored key a Secret holds, or None when it is not a well-formed key Secret."""
    meta = secret.get("metadata") or {}
    secret_labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    encoded = (secret.get("data") or {}).get(HASH_FIELD)
    key_id, tenant = secret_labels.get(KEY_ID_LABEL), secret_labels.get(labels.TENANT)
    if not (encoded and key_id and tenant):
        return None
    try:
        hex_digest = base64.b64decode(encoded).decode()
    except ValueError:
        return None
    return StoredKey(key_id=key_id, tenant=tenant, hex_digest=hex_digest,
                     description=annotations.get(DESCRIPTION_ANNOTATION, ""),
                     created_at=annotations.get(CREATED_ANNOTATION, meta.get("creationTimestamp", "")),
                     secret_name=meta.get("name", ""))
