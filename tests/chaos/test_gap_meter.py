"""The gap meter against a real livekit-server: two stand-in agents (participants with agent identities that play
tones), the first falls silent, the second speaks after a known pause; the meter must measure that pause and name
the second pod. Proves the instrument the chaos tests and bench/chaos_bench.py rely on."""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np
import pytest

from tests.callers.caller_bot import CallerBot, mint_token
from tests.chaos.gap_meter import GapMeter
from voxfleet.api import room_names

pytestmark = [pytest.mark.world, pytest.mark.realtime, pytest.mark.timeout(120)]

PAUSE_S = 0.8
TONE = (8000 * np.sin(2 * np.pi * 440 * np.arange(int(0.4 * 16000)) / 16000)).astype(np.int16)


async def test_the_meter_measures_the_pause_between_two_agents_and_names_who_answered(livekit):
    region = livekit["us-east"]
    room = f"gap-meter-{uuid.uuid4().hex[:8]}"
    first = room_names.agent_identity("aa", "pod-first")
    second = room_names.agent_identity("bb", "pod-second")
    async with CallerBot(region.url, mint_token(region, room=room, identity="caller")) as caller, \
            GapMeter(caller) as meter, \
            CallerBot(region.url, mint_token(region, room=room, identity=first)) as agent_a, \
            CallerBot(region.url, mint_token(region, room=room, identity=second)) as agent_b:
        deadline = time.monotonic() + 20
        while len(meter.joined) < 2:  # both tracks reached the caller
            assert time.monotonic() < deadline, f"agent tracks seen: {list(meter.joined)}"
            await asyncio.sleep(0.05)
        spoken = await agent_a.play(TONE)
        await asyncio.sleep(0.3)
        assert meter.serving_pod() == "pod-first"
        fault_at = spoken.ended  # the first agent's last sample left for the room
        await asyncio.sleep(PAUSE_S - (time.monotonic() - fault_at))
        answered = await agent_b.play(TONE, wait=False)
        gap = await meter.gap_after(fault_at, timeout=10, not_from_pod="pod-first")
        sent_pause = (await answered.done).started - fault_at
    print(f"gap meter: {gap.describe()}; the second agent began sending {sent_pause * 1000:.0f} ms after the"
          f" first stopped")
    assert gap.pod == "pod-second" and gap.identity == second
    # The meter's gap is the pause sent plus one transport leg (tens of ms here; generous for a loaded machine).
    assert sent_pause - 0.05 <= gap.since_fault <= sent_pause + 1.0
    assert gap.last_audio_at is not None and gap.since_last_audio >= gap.since_fault
