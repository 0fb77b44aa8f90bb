"""The memory recycle limit as the operator resolves it, and the recycler on this process's real /proc figures
(real allocations, no fake RSS). The end-to-end recycle of a worker with a live call: test_worker_health.py."""

from __future__ import annotations

import asyncio

from voxfleet.api.voiceagent import VoiceAgentSpec
from voxfleet.operator.agent_builder import memory_recycle_mb, worker_config
from voxfleet.worker.memory_recycle import MIB, MemoryRecycler, resident_bytes


def spec(**overrides) -> VoiceAgentSpec:
    return VoiceAgentSpec.model_validate({"regions": [{"name": "us-east"}], **overrides})


def test_the_limit_is_the_specs_else_90_percent_of_the_memory_limit_else_none():
    assert memory_recycle_mb(spec()) == 921  # the default 1Gi limit
    assert memory_recycle_mb(spec(worker={"resources": {"limits": {"memory": "512Mi"}}})) == 460
    assert memory_recycle_mb(spec(worker={"resources": {"limits": {"memory": "2G"}}})) == 1716
    assert memory_recycle_mb(spec(limits={"memoryRecycleMb": 300})) == 300
    assert memory_recycle_mb(spec(worker={"resources": {"limits": {"cpu": "1"}}})) is None


def test_the_worker_config_carries_the_resolved_limit_and_its_hash_follows_it():
    body = {"metadata": {"name": "concierge", "namespace": "tenant-acme", "generation": 3}}
    default = worker_config("acme", body, spec())
    lower = worker_config("acme", body, spec(limits={"memoryRecycleMb": 400}))
    assert default.to_wire()["memoryRecycleMb"] == 921 and lower.to_wire()["memoryRecycleMb"] == 400
    assert default.config_hash() != lower.config_hash()  # a new limit rolls the pool onto it


async def test_a_limit_the_idle_process_is_already_past_never_recycles():
    recycled: list[int] = []
    recycler = MemoryRecycler(max(1, resident_bytes() // MIB - 1), interval_seconds=0.01, recycle=recycled.append)
    await asyncio.wait_for(recycler.watch(), 2)  # returns at once: restarting could never get under it
    assert not recycled and not recycler.triggered


async def test_growing_past_the_limit_recycles_once():
    rss = resident_bytes()
    assert rss > 0
    recycled: list[int] = []
    recycler = MemoryRecycler(rss // MIB + 40, interval_seconds=0.02, recycle=recycled.append)
    watching = asyncio.create_task(recycler.watch())
    await asyncio.sleep(0.1)
    assert not recycled  # under the limit: still watching
    grown = bytearray(80 * MIB)  # touched pages: resident, as a leak's would be
    grown[::4096] = b"\x01" * len(grown[::4096])
    await asyncio.wait_for(watching, 2)
    print(f"recycler: idle {rss / MIB:.1f} MiB, limit {recycler.limit_bytes // MIB} MiB,"
          f" recycled at {recycled[0] / MIB:.1f} MiB")
    assert len(recycled) == 1 and recycled[0] > recycler.limit_bytes
    del grown
