"""Cursors of the call history (`GET /v1/sessions?cursor=`): opaque to tenants, signed, bound to their query.

A cursor is `<payload>.<mac>` in base64url. The payload is the position of the previous page's last call
(started_at in microseconds, session id); the MAC (HMAC-SHA256 with the gateway's session signing key, 128 bits)
covers the payload, the tenant and the page's filters. So a tenant cannot forge a position, read with another
tenant's cursor, or carry a cursor over to a different filter (whose order of pages it does not belong to): each
is a 422 naming `cursor`, like garbage. Any replica verifies any replica's cursors (they share the key; older
keys still verify while a new one rolls out). The position itself is no secret: it is the tenant's own call.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from datetime import datetime, timedelta, timezone

from voxfleet.store.session_records import HistoryFilter, PagePosition

_VERSION = 1
_MAC_BYTES = 16
_DOMAIN = b"voxfleet-history-cursor\x00"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_CURSOR_CHARS = 400  # a 200-character session id and the rest, base64url


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _query_of(where: HistoryFilter) -> bytes:
    """The filters a cursor belongs to, spelled unambiguously (NUL never appears in any of them)."""
    parts = [where.tenant, where.agent or "", _instant(where.started_from), _instant(where.started_to),
             where.end_reason or "", where.status or ""]
    return "\x00".join(parts).encode()


def _instant(moment: datetime | None) -> str:
    return "" if moment is None else str(_micros(moment))


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _mac(key: bytes, where: HistoryFilter, payload: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + _query_of(where) + b"\x00" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def encode(position: PagePosition, where: HistoryFilter, *, key: bytes) -> str:
    payload = struct.pack(">Bq", _VERSION, _micros(position.started_at)) + position.session_id.encode()
    return f"{_b64(payload)}.{_b64(_mac(key, where, payload))}"


def decode(cursor: str, where: HistoryFilter, *, keys: list[bytes]) -> PagePosition | None:
    """The position in a cursor minted for this tenant and these filters; None for anything else."""
    if len(cursor) > MAX_CURSOR_CHARS or cursor.count(".") != 1:
        return None
    payload_text, mac_text = cursor.split(".")
    try:
        payload, mac = _unb64(payload_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        return None
    if len(mac) != _MAC_BYTES or not any(hmac.compare_digest(_mac(key, where, payload), mac) for key in keys):
        return None
    try:
        version, micros = struct.unpack_from(">Bq", payload, 0)
        session_id = payload[9:].decode()
        started_at = _EPOCH + timedelta(microseconds=micros)
    except (struct.error, UnicodeDecodeError, OverflowError):
        return None
    if version != _VERSION or not session_id:
        return None
    return PagePosition(started_at=started_at, session_id=session_id)
