"""Where a call's checkpoint lives: the numbers behind the choice (docs/resilience.md, "The recovered agent
continues the conversation").

A realistic checkpoint (a call of N caller/agent turns with a tool call every third turn, session metadata),
its size as JSON and as sealed room metadata, the cost of sealing it, and the time of one write:

- LiveKit room metadata: `UpdateRoomMetadata` (Twirp) with a worker's own room-admin token, exactly what
  voxfleet.worker.room_checkpoint does during a call (the room is held open by a participant);
- a Kubernetes object per session: a merge patch of a ConfigMap in the world's real apiserver (the other
  candidate that needs nothing new), the same bytes in its data.

Against the running test world (`VOXFLEET_WORLD_DIR`, as the tests use it):

    VOXFLEET_WORLD_DIR=/work/team/world24 .venv/bin/python bench/checkpoint_store_bench.py --turns 10 --writes 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path

from livekit import api as lkapi
from livekit import rtc

from voxfleet.api import room_names
from voxfleet.gateway.livekit_tokens import LiveKitTokens
from voxfleet.gateway.settings import LiveKitRegion
from voxfleet.kube.client import KubeClient
from voxfleet.worker.call_checkpoint import CallCheckpoint, ToolCallRecord
from voxfleet.worker.checkpoint_seal import checkpoint_key, seal
from voxfleet.worker.room_checkpoint import RoomCheckpoint
from voxfleet.world.world import WorldInfo, default_state_dir


def conversation(turns: int) -> CallCheckpoint:
    messages, records = [], []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"turn {turn}: I would like to change my booking for"
                                                    " Friday to seven in the evening please"})
        if turn % 3 == 2:
            call_id = f"call_{uuid.uuid4().hex[:8]}"
            messages += [{"role": "assistant", "tool_calls": [{"id": call_id, "type": "function", "function": {
                             "name": "change_booking", "arguments": '{"day": "friday", "time": "19:00"}'}}]},
                         {"role": "tool", "tool_call_id": call_id,
                          "content": json.dumps({"speech": "Your booking is now Friday at seven.", "ok": True,
                                                 "result": {"booking": "B-1234", "day": "friday"}})}]
            records.append(ToolCallRecord(number=len(records) + 1, call_id=call_id, name="change_booking",
                                          arguments="0" * 32, state="finished",
                                          result={"speech": "Your booking is now Friday at seven.", "ok": True}))
        messages.append({"role": "assistant", "content": "Of course. Your table for two is now on Friday at seven"
                                                         " in the evening. Is there anything else I can do?"})
    return CallCheckpoint(session_id=f"sess-{uuid.uuid4().hex}", caller="caller-1234", eval_mode=False,
                          metadata={"crm": "C-998877", "campaign": "spring"}, messages=messages,
                          tool_calls=records, calls_made=len(records))


def figures(name: str, values: list[float]) -> dict:
    ordered = sorted(values)
    result = {"p50_ms": round(statistics.median(ordered), 2),
              "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 2), "max_ms": round(ordered[-1], 2)}
    print(f"  {name:<44} p50 {result['p50_ms']:7.2f} ms   p95 {result['p95_ms']:7.2f} ms   max {result['max_ms']:7.2f}")
    return result


async def room_writes(region: LiveKitRegion, checkpoint: CallCheckpoint, writes: int) -> list[float]:
    room = room_names.room_for_session("bench", "checkpoint", checkpoint.session_id)
    tokens = LiveKitTokens({"r": region})
    holder = rtc.Room()  # a participant keeps the room open, as the caller does
    await holder.connect(region.url, tokens.caller("r", room=room, identity="holder", name="holder",
                                                   ttl_seconds=600).jwt)
    try:
        agent = tokens.agent("r", room=room, identity="vf-agent.bench.pod", session_id=checkpoint.session_id,
                             ttl_seconds=600)
        store = RoomCheckpoint(livekit_url=region.url, token=agent.jwt, room=room, session_id=checkpoint.session_id,
                               key=checkpoint_key("bench-token", checkpoint.session_id), snapshot=lambda: checkpoint,
                               room_metadata=lambda: holder.metadata)
        latencies = []
        for _ in range(writes):
            started = time.perf_counter()
            assert await store.write_now(), "a write failed"
            latencies.append((time.perf_counter() - started) * 1000)
        await store.aclose()
        return latencies
    finally:
        await holder.disconnect()
        async with lkapi.LiveKitAPI(region.url, region.api_key, region.api_secret.get_secret_value()) as client:
            await client.room.delete_room(lkapi.DeleteRoomRequest(room=room))


async def configmap_writes(kubeconfig: str, sealed: str, writes: int) -> list[float]:
    namespace = f"bench-checkpoint-{uuid.uuid4().hex[:6]}"
    async with KubeClient.from_kubeconfig(kubeconfig) as kube:
        await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        try:
            await kube.create({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "session-checkpoint", "namespace": namespace}, "data": {}})
            latencies = []
            for index in range(writes):
                started = time.perf_counter()
                await kube.merge_patch("ConfigMap", "session-checkpoint",
                                       {"data": {"checkpoint": sealed, "sequence": str(index)}}, namespace)
                latencies.append((time.perf_counter() - started) * 1000)
            return latencies
        finally:
            await kube.delete("Namespace", namespace)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--writes", type=int, default=50)
    args = parser.parse_args()
    world = WorldInfo.load(Path(os.environ.get("VOXFLEET_WORLD_DIR") or default_state_dir()))
    lk = world.livekit_regions()["us-east"]
    region = LiveKitRegion(url=lk.url, api_key=lk.api_key, api_secret=lk.api_secret)

    checkpoint = conversation(args.turns)
    plain = checkpoint.to_bytes()
    key = checkpoint_key("bench-token", checkpoint.session_id)
    sealed = seal(plain, key=key, room="r", session_id=checkpoint.session_id)
    seal_ms = []
    for _ in range(200):
        started = time.perf_counter()
        seal(checkpoint.to_bytes(), key=key, room="r", session_id=checkpoint.session_id)
        seal_ms.append((time.perf_counter() - started) * 1000)
    print(f"checkpoint of a {args.turns}-turn call: {len(plain)} bytes of JSON, {len(sealed)} bytes sealed"
          f" ({len(checkpoint.messages)} messages, {len(checkpoint.tool_calls)} tool calls)")
    result = {"turns": args.turns, "plain_bytes": len(plain), "sealed_bytes": len(sealed),
              "encode_and_seal": figures("encode + seal (in the worker)", seal_ms),
              "room_metadata": figures("LiveKit UpdateRoomMetadata (the choice)",
                                       await room_writes(region, checkpoint, args.writes)),
              "configmap": figures("Kubernetes ConfigMap merge patch",
                                   await configmap_writes(world.kubeconfig, sealed, args.writes))}
    load = os.getloadavg()[0]
    print(f"  (load average {load:.1f} on {os.cpu_count()} cores while measuring)")
    result["load_average"] = round(load, 1)
    print(json.dumps({"bench": "checkpoint_store", **result}))


if __name__ == "__main__":
    asyncio.run(main())
