"""The checkpoint's home: the LiveKit room's own metadata, sealed, under one key beside the gateway's.

Why there (docs/resilience.md, "The recovered agent continues the conversation"): the room lives exactly as
long as the call and outlives the agent participant; it is in the region that serves the call, so a write is
one local HTTP request (about 2 ms here, against 5-10 ms for an object in the apiserver that every call would
write each turn, and workers that hold no Kubernetes credentials today); the gateway stays stateless. Every
participant receives room metadata, so the checkpoint is sealed (checkpoint_seal.py): the caller gets
ciphertext.

- Written by the serving worker through LiveKit's RoomService (Twirp, JSON) with its own access token, whose
  `roomAdmin` grant is for its room only (gateway/livekit_tokens.py); workers never hold an API secret.
- Merged into the room's metadata as the worker last saw it (the gateway's keys, room_names.METADATA_*, are
  kept); a room whose metadata is not a JSON object gets no checkpoint rather than losing its metadata.
- Writes are coalesced: one at a time, and a write asked for while one is on the way sends the newest state
  once it is done. `write_now` (before a non-idempotent tool runs) waits for that, bounded.
- Read by the recovering worker from the room it joined. A checkpoint that does not open (tampered, another
  tenant's or session's key) is ignored with a warning: the call goes on without its history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import structlog
from pydantic import ValidationError

from voxfleet.api.room_names import METADATA_CHECKPOINT
from voxfleet.worker.call_checkpoint import CallCheckpoint
from voxfleet.worker.checkpoint_seal import CheckpointUnreadable, open_sealed, seal

log = structlog.get_logger("voxfleet.worker.room_checkpoint")

WRITE_TIMEOUT_S = 3.0
UPDATE_METADATA_PATH = "/twirp/livekit.RoomService/UpdateRoomMetadata"


def twirp_url(livekit_url: str) -> str:
    """The RoomService endpoint on the LiveKit a ws(s):// URL names (the server serves both on one port)."""
    parts = urlsplit(livekit_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + UPDATE_METADATA_PATH, "", ""))


@dataclass
class WriteFigures:
    """What the session's usage record says about its checkpoints."""

    writes: int = 0
    failures: int = 0
    max_bytes: int = 0  # of the room metadata as written
    write_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.write_ms)
        return {"checkpoint_writes": self.writes, "checkpoint_failures": self.failures,
                "checkpoint_max_bytes": self.max_bytes,
                "checkpoint_write_ms_p50": round(ordered[len(ordered) // 2], 1) if ordered else None,
                "checkpoint_write_ms_max": round(ordered[-1], 1) if ordered else None}


class RoomCheckpoint:
    def __init__(self, *, livekit_url: str, token: str, room: str, session_id: str, key: bytes,
                 snapshot: Callable[[], CallCheckpoint], room_metadata: Callable[[], str | None]):
        self._url = twirp_url(livekit_url)
        self._token = token
        self._room = room
        self._session_id = session_id
        self._key = key
        self._snapshot = snapshot
        self._room_metadata = room_metadata  # the room's metadata as this worker's LiveKit client last saw it
        self._sequence = 0
        self._lock = asyncio.Lock()
        self._wanted = False
        self._writer: asyncio.Task | None = None
        self._http: aiohttp.ClientSession | None = None
        self._refused_metadata = False
        self._denied = False  # a token without roomAdmin (minted by an older gateway): stop asking, once warned
        self.figures = WriteFigures()

    # -- reading (the recovering worker) ---------------------------------------------------------------------

    def read(self, metadata: str | None) -> CallCheckpoint | None:
        """The checkpoint in the room's metadata; None when there is none or it does not open (warned)."""
        try:
            data = json.loads(metadata) if metadata else {}
        except ValueError:
            return None
        sealed = data.get(METADATA_CHECKPOINT) if isinstance(data, dict) else None
        if sealed is None:
            return None
        try:
            checkpoint = CallCheckpoint.from_bytes(open_sealed(sealed, key=self._key, room=self._room,
                                                               session_id=self._session_id))
            if checkpoint.session_id != self._session_id:
                raise CheckpointUnreadable("it is another session's")
        except (CheckpointUnreadable, ValidationError, ValueError) as error:
            reason = str(error) if isinstance(error, CheckpointUnreadable) else "not a checkpoint this worker reads"
            log.warning("call checkpoint ignored: the call goes on without its history", reason=reason[:200])
            return None
        self._sequence = checkpoint.sequence
        return checkpoint

    # -- writing ---------------------------------------------------------------------------------------------

    def write_soon(self) -> None:
        self._wanted = True
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_wanted(),
                                                                  name=f"checkpoint-{self._session_id[-12:]}")

    async def write_now(self, timeout: float = WRITE_TIMEOUT_S) -> bool:
        """Write the current state and wait for it (at most `timeout`); False if it did not land."""
        try:
            async with asyncio.timeout(timeout):
                async with self._lock:
                    return await self._write()
        except TimeoutError:
            self.figures.failures += 1
            log.warning("call checkpoint write timed out", timeout_s=timeout)
            return False

    async def flush(self, timeout: float = WRITE_TIMEOUT_S) -> None:
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._writer), timeout)

    async def aclose(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(BaseException):
                await self._writer
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _write_wanted(self) -> None:
        while self._wanted:
            self._wanted = False
            async with self._lock:
                await self._write()

    async def _write(self) -> bool:
        if self._denied:
            return False
        current = self._room_metadata() or ""
        try:
            data = json.loads(current) if current else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            if not self._refused_metadata:  # somebody else's metadata: keep it, go without a checkpoint
                self._refused_metadata = True
                log.warning("room metadata is not a JSON object; the call is not checkpointed")
            return False
        self._sequence += 1
        checkpoint = self._snapshot().model_copy(update={"sequence": self._sequence})
        data[METADATA_CHECKPOINT] = seal(checkpoint.to_bytes(), key=self._key, room=self._room,
                                         session_id=self._session_id)
        metadata = json.dumps(data, separators=(",", ":"))
        started = time.perf_counter()
        try:
            if self._http is None:
                self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WRITE_TIMEOUT_S))
            async with self._http.post(self._url, json={"room": self._room, "metadata": metadata},
                                       headers={"Authorization": f"Bearer {self._token}"}) as reply:
                if reply.status in (401, 403):
                    self._denied = True
                if reply.status != 200:
                    # Twirp's error body names the code (e.g. permission_denied); never the token.
                    detail = (await reply.text())[:200]
                    raise RuntimeError(f"LiveKit answered HTTP {reply.status}: {detail}")
        except Exception as error:  # noqa: BLE001 - a lost checkpoint must not end the call
            self.figures.failures += 1
            log.warning("call checkpoint not written", error=f"{type(error).__name__}: {error}"[:300])
            return False
        self.figures.writes += 1
        self.figures.max_bytes = max(self.figures.max_bytes, len(metadata.encode()))
        self.figures.write_ms.append((time.perf_counter() - started) * 1000)
        del self.figures.write_ms[:-256]
        return True
