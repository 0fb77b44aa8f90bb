"""The checkpoint's home against the real livekit-server: the worker's own token writes it beside the gateway's
keys; a token without roomAdmin of the room (the caller's) is refused, and the worker stops asking."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from livekit import api as lkapi
from livekit import rtc

from voxfleet.api import room_names
from voxfleet.gateway.livekit_tokens import LiveKitTokens
from voxfleet.gateway.settings import LiveKitRegion
from voxfleet.worker.call_checkpoint import CallCheckpoint
from voxfleet.worker.checkpoint_seal import checkpoint_key
from voxfleet.worker.room_checkpoint import RoomCheckpoint

pytestmark = [pytest.mark.world, pytest.mark.timeout(60)]


async def test_the_worker_writes_its_checkpoint_beside_the_gateways_keys_and_a_caller_token_cannot(livekit):
    region = livekit["us-east"]
    tokens = LiveKitTokens({"us-east": LiveKitRegion(url=region.url, api_key=region.api_key,
                                                     api_secret=region.api_secret)})
    session_id = f"sess-{uuid.uuid4().hex}"
    room = room_names.room_for_session("acme", "concierge", session_id)
    key = checkpoint_key("namespace-token", session_id)
    checkpoint = CallCheckpoint(session_id=session_id, caller="caller-1",
                                messages=[{"role": "user", "content": "hello"}])
    caller = rtc.Room()  # holds the room open and sees its metadata, as a caller does
    await caller.connect(region.url, tokens.caller("us-east", room=room, identity="caller-1", name="c",
                                                   ttl_seconds=120).jwt)
    async with lkapi.LiveKitAPI(region.url, region.api_key, region.api_secret) as admin:
        try:
            gateways = {room_names.METADATA_TENANT: "acme", room_names.METADATA_SESSION: session_id}
            await admin.room.update_room_metadata(lkapi.UpdateRoomMetadataRequest(room=room,
                                                                                 metadata=json.dumps(gateways)))
            agent = tokens.agent("us-east", room=room, identity="vf-agent.x.pod", session_id=session_id,
                                 ttl_seconds=120)
            seen = {"metadata": json.dumps(gateways)}  # what the worker's LiveKit client last saw
            store = RoomCheckpoint(livekit_url=region.url, token=agent.jwt, room=room, session_id=session_id,
                                   key=key, snapshot=lambda: checkpoint, room_metadata=lambda: seen["metadata"])
            assert await store.write_now()
            # LiveKit answers the update before the room applies it: a list right after can still show the old
            # metadata (seen once in a full run), so read until the checkpoint is there.
            written, waited = await _metadata_once(admin, room,
                                                   lambda metadata: room_names.METADATA_CHECKPOINT in metadata)
            print(f"room metadata with the checkpoint: {len(written)} bytes; write took"
                  f" {store.figures.write_ms[0]:.1f} ms, listed {waited * 1000:.0f} ms after it was answered")
            data = json.loads(written)
            assert {k: data[k] for k in gateways} == gateways  # the gateway's keys are kept
            restored = store.read(written)
            assert restored is not None and restored.messages == [{"role": "user", "content": "hello"}]
            assert restored.sequence == 1

            refused = RoomCheckpoint(livekit_url=region.url, token=caller_token(tokens, room), room=room,
                                     session_id=session_id, key=key, snapshot=lambda: checkpoint,
                                     room_metadata=lambda: written)
            assert not await refused.write_now() and not await refused.write_now()
            assert refused.figures.failures == 1  # denied once, then not asked again
            after = (await admin.room.list_rooms(lkapi.ListRoomsRequest(names=[room]))).rooms[0].metadata
            assert after == written
            await store.aclose()
            await refused.aclose()
        finally:
            await caller.disconnect()
            await admin.room.delete_room(lkapi.DeleteRoomRequest(room=room))


def caller_token(tokens: LiveKitTokens, room: str) -> str:
    return tokens.caller("us-east", room=room, identity="caller-2", name="c", ttl_seconds=120).jwt


async def _metadata_once(admin: lkapi.LiveKitAPI, room: str, done, timeout: float = 5.0) -> tuple[str, float]:
    """The room's metadata once `done(metadata)` holds (the last one read if it never does), and how long that took."""
    started = time.monotonic()
    while True:
        metadata = (await admin.room.list_rooms(lkapi.ListRoomsRequest(names=[room]))).rooms[0].metadata
        if done(metadata) or time.monotonic() - started > timeout:
            return metadata, time.monotonic() - started
        await asyncio.sleep(0.05)
