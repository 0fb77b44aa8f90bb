"""Tenant webhook signing secrets, derived and never stored, and the signature every delivery carries.

An endpoint's secret is HMAC-SHA256(platform key, "voxfleet-webhook-secret" | tenant | endpoint id | nonce),
where the platform key is the gateway's session signing key (every replica holds the same one; it never leaves
the gateway). The database keeps only the random nonce and a fingerprint of the key that derived it: a copy of
the database (a backup, a read replica, an SQL injection elsewhere) yields no secret, and a tenant gets its
secret once, in the answer to the create. On a rotation of the session signing key the old key stays among
`previous_session_signing_keys`, and the fingerprint picks it: secrets keep working until the old key is dropped,
after which the endpoint's deliveries fail with `no_signing_key` (re-create the endpoint for a new secret).

Signature: `Voxfleet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, the secret's
UTF-8 text as the HMAC key, as Stripe-style receivers expect.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
_SECRET_LABEL = b"voxfleet-webhook-secret"
_KEY_ID_LABEL = b"voxfleet-webhook-key-id"


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def key_id(key: bytes) -> str:
    """A fingerprint of a platform key (not the key, and not usable to find it): which key derived a secret."""
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def derive(key: bytes, *, tenant: str, endpoint_id: str, nonce: str) -> str:
    message = b"\x00".join([_SECRET_LABEL, tenant.encode(), endpoint_id.encode(), nonce.encode()])
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return SECRET_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def secret_for(keys: list[bytes], *, tenant: str, endpoint_id: str, nonce: str, derived_by: str) -> str | None:
    """The endpoint's secret from whichever of the platform keys derived it; None when that key is gone."""
    for key in keys:
        if hmac.compare_digest(key_id(key), derived_by):
            return derive(key, tenant=tenant, endpoint_id=endpoint_id, nonce=nonce)
    return None


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Voxfleet-Signature header value for this body sent at this time."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"
