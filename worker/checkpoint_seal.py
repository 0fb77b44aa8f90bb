"""Sealing a call's checkpoint: AES-256-GCM under a key only the tenant namespace's workers can derive.

The checkpoint lives in the LiveKit room's metadata (room_checkpoint.py), which every participant of the room,
the caller included, receives. So it is sealed:

- key = HKDF-SHA256(the namespace's worker token, salt = a fixed label, info = the session id). The token is the
  one the namespace's workers already mount (voxfleet.api.worker_credentials: derived per namespace from the
  platform's root), so a worker of another tenant derives another key, a caller derives none, and one session's
  key opens no other session's checkpoint.
- associated data = the room name and the session id: a checkpoint copied into another room (by whoever holds
  LiveKit admin rights) does not open there.
- a fresh random 96-bit nonce per write (a call writes a few hundred checkpoints at most, far below the 2^32
  writes per key that random GCM nonces allow).

Not compressed on purpose: compression before encryption lets whoever sees the ciphertext's length and shapes
part of the plaintext (the caller, by what they say) probe the rest (CRIME/BREACH). The length still says
roughly how much was said; docs/security.md names that.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = "v1"
# Changing the label makes every live call's checkpoint unreadable to a recovering worker: bump it with FORMAT.
KEY_LABEL = b"voxfleet.dev/call-checkpoint/v1"
NONCE_BYTES = 12


class CheckpointUnreadable(Exception):
    """The sealed text is not ours: another format, another key (tenant, session or rotated token), or tampered."""


def checkpoint_key(worker_token: str, session_id: str) -> bytes:
    if not worker_token:
        raise ValueError("a checkpoint key needs the namespace's worker token")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=KEY_LABEL,
                info=session_id.encode()).derive(worker_token.encode())


def _associated(room: str, session_id: str) -> bytes:
    return f"{FORMAT}\n{room}\n{session_id}".encode()


def seal(plaintext: bytes, *, key: bytes, room: str, session_id: str) -> str:
    """`v1.<base64url(nonce || ciphertext || tag)>`: text a JSON string value carries as is."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext, _associated(room, session_id))
    return f"{FORMAT}.{base64.urlsafe_b64encode(nonce + sealed).rstrip(b'=').decode()}"


def open_sealed(text: object, *, key: bytes, room: str, session_id: str) -> bytes:
    if not isinstance(text, str) or not text.startswith(f"{FORMAT}."):
        raise CheckpointUnreadable("not a sealed checkpoint of a format this worker reads")
    body = text[len(FORMAT) + 1:]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        raise CheckpointUnreadable("not base64") from None
    if len(raw) < NONCE_BYTES + 16:
        raise CheckpointUnreadable("too short")
    try:
        return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated(room, session_id))
    except InvalidTag:
        raise CheckpointUnreadable("authentication failed (tampered, or sealed with another key)") from None
