"""`Idempotency-Key` on session create: a retried request gets the call it already placed, never a second one.

The key is the tenant's (any 1-255 visible ASCII characters, e.g. a UUID); it is stored with the call's row
(`sessions.idempotency_key`, unique per tenant) together with a hash of what was asked (agent and body, parsed,
so formatting differences do not matter). A retry with the same key and the same request answers the same session
(id, room, region) with a fresh LiveKit token; with a different request it is a 422 naming the header. The key
lives as long as the call's record (the tenant's retention, or until the call is erased).

How placing the call stays single under concurrency is in voxfleet.store.session_records.reserve_idempotency_key.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets

from pydantic import BaseModel

from voxfleet.gateway.api_errors import ApiError

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
_KEY = re.compile(r"^[\x21-\x7e]{1,%d}$" % MAX_KEY_CHARS)
_IDENTITY_DOMAIN = b"voxfleet-idempotent-caller\x00"


def checked_key(value: str | None) -> str | None:
    """The header's key, or None when absent; 422 naming the header when it is not a key. The value is never
    echoed (a tenant may have pasted something secret into the wrong header)."""
    if value is None:
        return None
    if not _KEY.match(value):
        raise ApiError(422, "invalid_idempotency_key",
                       f"The {HEADER} header must be 1 to {MAX_KEY_CHARS} visible ASCII characters (e.g. a UUID).",
                       details=[{"field": HEADER, "message": f"1 to {MAX_KEY_CHARS} visible ASCII characters",
                                 "reason": "invalid"}])
    return value


def request_hash(agent: str, body: BaseModel) -> str:
    """What a retry must repeat: the agent and the parsed body (field order and spacing do not count)."""
    canonical = json.dumps({"agent": agent, "body": body.model_dump(mode="json", by_alias=True)},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def reused_key() -> ApiError:
    return ApiError(422, "idempotency_key_reused",
                    f"This {HEADER} was used for a different request (another agent or body); use a new key for a"
                    " new call.",
                    details=[{"field": HEADER, "message": "already used for a different request",
                              "reason": "Conflict"}])


def caller_identity(tenant: str, key: str) -> str:
    """The caller's LiveKit identity for a keyed create that names none: derived from the key, so a retry's fresh
    token is for the same participant as the first one's (a generated identity would be stored nowhere)."""
    digest = hashlib.sha256(_IDENTITY_DOMAIN + tenant.encode() + b"\x00" + key.encode()).hexdigest()
    return f"caller-{digest[:16]}"


def placeholder_session_id() -> str:
    """The reserving row's id while its call is being placed (never committed: `settle` replaces it)."""
    return f"~reserving~{secrets.token_hex(16)}"
