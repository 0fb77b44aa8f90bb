"""Signed session ids that say where a session lives, so the gateway needs no database.

An id is ``<payload>.<mac>`` in base64url: the payload holds the region, the worker's pod IP (where the slot
was claimed), a random nonce and the expiry; the MAC (HMAC-SHA256, 128 bits) covers the payload *and the
tenant's name*. The tenant is not written in the id: an id verifies only for the tenant it was minted for, so
another tenant's id is indistinguishable from garbage (404), and nothing about tenant B leaks to tenant A.

Any replica with the same signing key verifies any replica's ids; older keys stay valid for verification while
a new key rolls out. The ids fit the wire contract (voxfleet.api.wire.SESSION_ID_PATTERN, at most 200
characters): at most 149 with a 63-character region and an IPv6 pod IP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import struct
import time
from dataclasses import dataclass

_VERSION = 1
_MAC_BYTES = 16
_NONCE_BYTES = 8
_DOMAIN = b"voxfleet-session-id\x00"


@dataclass(frozen=True)
class SessionRef:
    region: str
    worker_ip: str
    nonce: bytes
    expires_at: int  # unix seconds

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    @property
    def nonce_hex(self) -> str:
        return self.nonce.hex()


def new_nonce() -> bytes:
    """A session's random part (also what makes its room name and agent identities unique)."""
    return secrets.token_bytes(_NONCE_BYTES)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, tenant: str, payload: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + tenant.encode() + b"\x00" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def encode(ref: SessionRef, *, tenant: str, key: bytes) -> str:
    ip = ipaddress.ip_address(ref.worker_ip).packed
    region = ref.region.encode()
    if len(region) > 63 or len(ref.nonce) != _NONCE_BYTES:
        raise ValueError("region names are at most 63 bytes and nonces 8 bytes")
    payload = struct.pack(">BI", _VERSION, ref.expires_at) + ref.nonce + bytes([len(ip)]) + ip \
        + bytes([len(region)]) + region
    return f"{_b64(payload)}.{_b64(_mac(key, tenant, payload))}"


def decode(session_id: str, *, tenant: str, keys: list[bytes]) -> SessionRef | None:
    """The ref inside a valid id of this tenant; None for anything else (forged, another tenant's, garbage).

    Expiry is not checked here: callers decide what an expired session means to them.
    """
    if len(session_id) > 200 or session_id.count(".") != 1:
        return None
    payload_text, mac_text = session_id.split(".")
    try:
        payload, mac = _unb64(payload_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        return None
    if _b64(payload) != payload_text or _b64(mac) != mac_text:
        return None  # only the canonical spelling: unused trailing bits would make aliases of one id
    if len(mac) != _MAC_BYTES or not any(hmac.compare_digest(_mac(key, tenant, payload), mac) for key in keys):
        return None
    try:
        version, expires_at = struct.unpack_from(">BI", payload, 0)
        offset = 5
        nonce = payload[offset:offset + _NONCE_BYTES]
        offset += _NONCE_BYTES
        ip_length = payload[offset]
        ip = str(ipaddress.ip_address(payload[offset + 1:offset + 1 + ip_length]))
        offset += 1 + ip_length
        region_length = payload[offset]
        region = payload[offset + 1:offset + 1 + region_length].decode()
        if version != _VERSION or offset + 1 + region_length != len(payload):
            return None
    except (struct.error, IndexError, ValueError, UnicodeDecodeError):
        return None  # a valid MAC over a payload we cannot read: a key shared with something else
    return SessionRef(region=region, worker_ip=ip, nonce=nonce, expires_at=expires_at)
