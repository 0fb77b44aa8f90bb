"""Worker benchmark: what the platform adds to a voice turn, how fast a warm worker answers, how dense it runs.

Everything is measured as a caller hears it, through a real livekit-server on loopback, in one run:

1. transport: two one-way legs through livekit-server (a tone from one participant to another, timed on the
   machine's one monotonic clock); beside it the round trip through an echo participant (which also holds the
   echo's own buffering, so the overhead below subtracts the two legs, the stricter figure).
2. floor: a bare Pipecat pipeline (LiveKit input -> Silero VAD, stop 0.2 s -> fixed audio reply -> output),
   TTFA p50/p95 over the turns.
3. voxfleet with zero-delay providers (Deepgram, OpenAI-compatible and Cartesia fakes, speech-timeout 0 s):
   TTFA p50/p95, and what it adds to the floor (goal: <= 10 ms p50).
4. voxfleet with providers at fixed latencies: platform overhead = TTFA - STT final delay - LLM TTFT - TTS TTFB
   - VAD stop - speech timeout - the two transport legs (goal p95 <= 50 ms), beside the floor's TTFA put
   through the same formula (what it leaves over for any Pipecat pipeline: Silero's trailing edge, frame
   granularity, the first output chunk); the same with smart-turn, whose added time is reported on its own.
5. dispatch -> greeting audio heard: a warm worker (goal p95 <= 300 ms) next to a cold process started now, and
   beside the floor: a bare LiveKit participant (connect, listen to the caller, publish, wait for the caller's
   subscription, play pre-rendered audio) given its token the same way (`--only-dispatch` runs just this).
6. density (issue 19): a ladder of concurrent calls (--levels, default 1,4,8,16,24,32,50; it stops at the first
   level that broke), the callers in processes of their own (never charged to the agent), the agent's whole
   process tree read from /proc: CPU % of a core per call, RSS per call, TTFA p50/p95 and barge-in stop p50/p95 as
   the callers heard them, underruns; the highest level meeting the latency rule (TTFA p95 and barge-in stop p95
   within 20 % of the one-call level, no failed turn). The same ladder first for a bare LiveKit participant floor
   (run_floor_agents), then for each --variants of the worker (VARIANTS: issue 19's switches off/on), so every
   change is measured against the same run's baseline. Providers at a distance (cloud fakes: the goal's measure,
   goal <= 4 % of a core per call) or --providers offline.

Callers, livekit-server and the worker share this machine (and, on a shared box, other people's work): the
worker's own CPU is read from /proc. Prints the figures and one JSON line (prefix `BENCH_JSON `).

    .venv/bin/python bench/worker_bench.py [--turns 50] [--quick]
    .venv/bin/python bench/worker_bench.py --only-density --levels 1,4,8 --variants before,after
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.callers.caller_bot import (  # noqa: E402
    CallerBot,
    EchoBot,
    measure_round_trip,
    measure_two_legs,
    mint_token,
    synthesize,
)
from tests.worker.worker_harness import WorkerUnderTest, offline_spec  # noqa: E402

QUESTION = "what are your opening hours"
REPLY = "We are open every day from nine to six."
GREETING = "Hello, thanks for calling."
VAD_STOP_S = 0.2
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def ms(value: float) -> float:
    return round(value * 1000, 1)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- livekit-server ------------------------------------------------------------------------------------------------


def start_livekit(state: Path):
    from voxfleet.world import binaries
    from voxfleet.world import livekit as world_livekit

    regions, servers = world_livekit.start(binary=binaries.find("livekit-server"), state_dir=state,
                                           world_id=f"bench-{uuid.uuid4().hex[:6]}", regions=("bench",))
    world_livekit.wait_ready(regions, servers)
    return regions[0], servers


# -- the bare Pipecat floor (runs as a child process: `worker_bench.py --bare-agent URL TOKEN ROOM`) --------------


def run_bare_agent(url: str, token: str, room: str) -> None:
    import numpy as np
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADParams
    from pipecat.frames.frames import OutputAudioRawFrame, VADUserStoppedSpeakingFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.transports.livekit.transport import LiveKitParams, LiveKitTransport
    from pipecat.workers.runner import WorkerRunner

    reply = synthesize(REPLY)
    import soxr

    reply24 = soxr.resample(reply, 16000, 24000).astype(np.int16).tobytes()

    class FixedReply(FrameProcessor):
        async def process_frame(self, frame, direction):
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)
            if isinstance(frame, VADUserStoppedSpeakingFrame):
                step = 24000 * 2 * 40 // 1000
                for offset in range(0, len(reply24), step):
                    await self.push_frame(OutputAudioRawFrame(reply24[offset:offset + step], 24000, 1),
                                          FrameDirection.DOWNSTREAM)

    async def main():
        transport = LiveKitTransport(url, token, room, LiveKitParams(audio_in_enabled=True, audio_out_enabled=True,
                                                                     audio_in_sample_rate=16000))
        vad = VADProcessor(vad_analyzer=SileroVADAnalyzer(sample_rate=16000, params=VADParams(stop_secs=VAD_STOP_S)))
        pipeline = Pipeline([transport.input(), vad, FixedReply(), transport.output()])
        worker = PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=16000,
                                                                audio_out_sample_rate=24000),
                                enable_rtvi=False, idle_timeout_secs=None)
        runner = WorkerRunner(handle_sigint=True)
        await runner.add_workers(worker)
        await runner.run()

    asyncio.run(main())


# -- the bare LiveKit join floor (child process: `worker_bench.py --bare-join URL`, one agent token a line) -----


def run_bare_join(url: str) -> None:
    """What any agent pays to greet a caller through LiveKit: connect, listen to the caller (16 kHz, 32 ms frames,
    as the worker does), publish a track, wait for the caller to subscribe, play pre-rendered audio. No Pipecat,
    no voxfleet, no TTS: the floor under dispatch -> greeting."""
    import numpy as np
    import soxr
    from livekit import rtc

    greeting = soxr.resample(synthesize(GREETING), 16000, 24000).astype(np.int16)
    step = 24000 * 20 // 1000

    async def greet(token: str) -> dict:
        began = time.monotonic()
        stages = {}
        room = rtc.Room()
        subscribed = asyncio.Event()
        room.on("local_track_subscribed", lambda _track: subscribed.set())
        listening: list[asyncio.Task] = []

        async def listen(track: rtc.Track) -> None:
            async for _frame in rtc.AudioStream(track, sample_rate=16000, num_channels=1, frame_size_ms=32):
                pass

        room.on("track_subscribed", lambda track, *_: listening.append(asyncio.create_task(listen(track))))
        await room.connect(url, token, options=rtc.RoomOptions(auto_subscribe=True))
        stages["connected"] = time.monotonic() - began
        source = rtc.AudioSource(24000, 1, queue_size_ms=1000)
        track = rtc.LocalAudioTrack.create_audio_track("greeting", source)
        options = rtc.TrackPublishOptions()
        options.source = rtc.TrackSource.SOURCE_MICROPHONE
        await room.local_participant.publish_track(track, options)
        stages["published"] = time.monotonic() - began
        await asyncio.wait_for(subscribed.wait(), 5)
        stages["subscribed"] = time.monotonic() - began
        for offset in range(0, len(greeting), step):
            chunk = greeting[offset:offset + step]
            await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), 24000, 1, len(chunk)))
        await source.wait_for_playout()
        await room.disconnect()
        await source.aclose()
        for task in listening:
            task.cancel()
        return stages

    async def main() -> None:
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        print("ready", flush=True)
        while line := (await reader.readline()).decode().strip():
            stages = await greet(line)
            print("done " + json.dumps(stages), flush=True)

    asyncio.run(main())


# -- measurements -----------------------------------------------------------------------------------------------


async def ask_turns(region, room: str, turns: int, *, greeting: bool, gap_s: float = 0.4) -> dict:
    """TTFA (heard) per turn, plus underruns: gaps > 60 ms inside an answer the caller heard."""
    caller = CallerBot(region.url, mint_token(region, room=room, identity=f"caller-{uuid.uuid4().hex[:6]}"))
    ttfas, underruns, failures = [], 0, 0
    async with caller:
        await asyncio.wait_for(caller.agent_joined.wait(), 30)
        if greeting:
            await caller.wait_for_agent_speech(timeout=20)
        else:
            await asyncio.sleep(1.0)
        for _ in range(turns):
            spoken = await caller.say(QUESTION)
            try:
                answer = await caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=10, silence_s=0.5)
            except TimeoutError:
                failures += 1
                continue
            ttfas.append(answer.start - spoken.voice_ended)
            underruns += count_gaps(caller, answer.start, answer.end)
            await asyncio.sleep(gap_s)
    return {"ttfa": ttfas, "underruns": underruns, "failures": failures}


def count_gaps(caller: CallerBot, start: float, end: float, gap_s: float = 0.06) -> int:
    voiced = [at for at in caller.voiced_frames(start - 0.001) if at <= end]
    # eSpeak's own pauses between words reach ~50 ms; a longer silence inside a sentence is lost audio.
    return sum(1 for a, b in zip(voiced, voiced[1:]) if b - a > gap_s + 0.01)


def summary(name: str, values: list[float]) -> dict:
    return {"name": name, "n": len(values), "p50_ms": ms(pct(values, 50)), "p95_ms": ms(pct(values, 95)),
            "max_ms": ms(max(values)) if values else None}


async def measure_echo_round_trip(region) -> list[float]:
    """The round trip through an echo participant, reported beside the two legs: it also holds the echo's own
    buffering, so subtracting it would understate the platform's overhead; the overhead uses the two legs."""
    room = f"echo-{uuid.uuid4().hex[:8]}"
    async with EchoBot(region.url, mint_token(region, room=room, identity="echo")):
        async with CallerBot(region.url, mint_token(region, room=room, identity="prober")) as prober:
            return await measure_round_trip(prober, count=10, gap_s=0.3)


async def measure_floor(region, turns: int) -> dict:
    import subprocess

    room = f"floor-{uuid.uuid4().hex[:8]}"
    token = mint_token(region, room=room, identity="bare-agent")
    child = subprocess.Popen([sys.executable, __file__, "--bare-agent", region.url, token, room],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return await ask_turns(region, room, turns, greeting=False)
    finally:
        child.terminate()
        child.wait(10)


STAGES = {"turn_detection": "voxfleet_worker_turn_detection_seconds", "stt_final": "voxfleet_worker_stt_final_latency_seconds",
          "llm_ttft": "voxfleet_worker_llm_ttft_seconds", "tts_ttfb": "voxfleet_worker_tts_ttfb_seconds",
          "worker_ttfa": "voxfleet_worker_ttfa_seconds"}


def stage_means(exposition: str) -> dict:
    """Where a turn's time goes, as the worker itself measured it: the mean of each stage histogram."""
    sums: dict[str, float] = {}
    for line in exposition.splitlines():
        for stage, name in STAGES.items():
            for suffix in ("_sum", "_count"):
                if line.startswith(name + suffix):
                    sums[stage + suffix] = sums.get(stage + suffix, 0.0) + float(line.rsplit(" ", 1)[1])
    return {stage: ms(sums[stage + "_sum"] / sums[stage + "_count"]) for stage in STAGES
            if sums.get(stage + "_count")}


def provider_spec(pipeline: dict, *, detector: str, speech_timeout: float, greeting: str = "") -> dict:
    spec = offline_spec(greeting=greeting, intents=[], scaling={"sessionsPerWorker": 4},
                        limits={"maxSessionSeconds": 3600, "idleTimeoutSeconds": 600})
    spec["pipeline"] = pipeline
    spec["turnDetection"] = {"detector": detector, "vad": {"stopMs": round(VAD_STOP_S * 1000)},
                             "timeouts": {"speechTimeoutMs": round(speech_timeout * 1000), "maxTurnWaitMs": 3000}}
    return spec


async def measure_voxfleet(region, state: Path, turns: int, *, stt_ms: float, ttft_ms: float, ttfb_ms: float,
                           detector: str = "speech-timeout", speech_timeout: float = 0.0) -> dict:
    from tests.fakes.openai_server import Script
    from tests.fakes.providers import start_fake_providers

    fakes = start_fake_providers(llm_ttft_ms=ttft_ms, stt_final_delay_ms=stt_ms, tts_ttfb_ms=ttfb_ms,
                                 transcripts=[QUESTION], script=Script(reply=REPLY))
    worker = WorkerUnderTest.start(state, provider_spec(fakes.pipeline_spec(), detector=detector,
                                                        speech_timeout=speech_timeout),
                                   livekit=region, env=fakes.secret_env())
    try:
        room = f"vox-{uuid.uuid4().hex[:8]}"
        assert worker.dispatch(room=room).status_code == 201
        result = await ask_turns(region, room, turns, greeting=False)
        result["stages_ms"] = stage_means(worker.metrics())
        return result
    finally:
        worker.stop()
        fakes.stop()


async def measure_bare_join(region, count: int) -> dict:
    """The same greeting measurement against a bare LiveKit participant (run_bare_join): the transport's floor,
    with its own stages (connected, published, caller subscribed; seconds from the token's arrival)."""
    child = await asyncio.create_subprocess_exec(sys.executable, __file__, "--bare-join", region.url,
                                                 stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    heard, stages = [], []
    try:
        assert (await asyncio.wait_for(child.stdout.readline(), 60)).strip() == b"ready"
        for _ in range(count):
            room = f"bare-{uuid.uuid4().hex[:8]}"
            agent_token = mint_token(region, room=room, identity=f"agent-{uuid.uuid4().hex[:6]}")
            async with CallerBot(region.url, mint_token(region, room=room, identity="caller")) as caller:
                started = time.monotonic()
                child.stdin.write(agent_token.encode() + b"\n")
                await child.stdin.drain()
                greeting = await caller.wait_for_agent_speech(after=started, timeout=20, silence_s=0.3)
                heard.append(greeting.start - started)
                status, _, figures = (await asyncio.wait_for(child.stdout.readline(), 30)).decode().partition(" ")
                assert status == "done", status
                stages.append(json.loads(figures))
            await asyncio.sleep(0.5)
    finally:
        child.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.wait(), 10)
        if child.returncode is None:
            child.kill()
    return {"heard": heard, "stage_p50_ms": {name: ms(statistics.median(s[name] for s in stages))
                                             for name in stages[0]} if stages else {}}


async def measure_dispatch(region, state: Path, count: int) -> dict:
    """Dispatch -> first greeting audio heard, warm; and process start -> greeting heard, cold."""
    spec = offline_spec(greeting=GREETING, scaling={"sessionsPerWorker": 2})
    warm = []
    worker = WorkerUnderTest.start(state, spec, livekit=region)
    try:
        for _ in range(count):
            room = f"warm-{uuid.uuid4().hex[:8]}"
            async with CallerBot(region.url, mint_token(region, room=room, identity="caller")) as caller:
                started = time.monotonic()
                assert worker.dispatch(room=room).status_code == 201
                greeting = await caller.wait_for_agent_speech(after=started, timeout=20, silence_s=0.3)
                warm.append(greeting.start - started)
            await asyncio.sleep(0.5)
    finally:
        worker.stop()
    room = f"cold-{uuid.uuid4().hex[:8]}"
    async with CallerBot(region.url, mint_token(region, room=room, identity="caller")) as caller:
        started = time.monotonic()
        cold_worker = WorkerUnderTest.start(state, spec, livekit=region, wait_ready=0)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if cold_worker.dispatch(room=room).status_code == 201:
                        break
                except Exception:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("cold worker never took the dispatch")
                await asyncio.sleep(0.02)
            greeting = await caller.wait_for_agent_speech(after=started, timeout=30, silence_s=0.3)
            cold = greeting.start - started
        finally:
            cold_worker.stop()
    return {"warm": warm, "cold": cold}


# -- density: a ladder of concurrent calls, callers in their own processes ----------------------------------------
#
# Callers run in child processes of their own (CALLERS_PER_PROCESS calls each), so their CPU is never charged to
# the agent under test; the agent's CPU and memory are read from /proc for its whole process tree. The same ladder
# runs against a bare LiveKit participant floor (run_floor_agents: publish/subscribe exactly like the worker, an
# energy detector instead of Pipecat), so what LiveKit's native stack costs per call is measured beside it.

CALLERS_PER_PROCESS = 8
BARGE_IN = "no stop"
IDLE_READING_S = 10.0  # every agent up, no call: its own cost
BARGE_AFTER_S = 0.6  # into the answer: the caller interrupts while the agent speaks
FLOOR_VOICED_RMS = 300.0  # int16 RMS: the floor's whole "VAD" (as the worker's loudness floor)
FLOOR_START_S = 0.2  # voiced this long starts a barge-in (the spec's default vad.startMs)
# A level broke (the ladder stops there): calls failed or latency more than doubled against one call.
BROKEN_FAILURES = 0.2
BROKEN_RATIO = 2.0
# The bare LiveKit floors (run_floor_agents' arguments): answering like an agent, and only listening.
FLOORS = {"floor": [], "floor-listen": ["listen-only"], "floor-mute": ["mute-when-silent"]}
# Each switch of issue 19's density work, off: the bench's A/B variants (worker/settings.py has the switches).
VARIANTS = {
    "before": {"VOXFLEET_VAD_BATCHED": "false", "VOXFLEET_STT_WEBSOCKET_COMPRESSION": "true"},
    "no-deflate": {"VOXFLEET_VAD_BATCHED": "false", "VOXFLEET_STT_WEBSOCKET_COMPRESSION": "false"},
    "batched-vad": {"VOXFLEET_VAD_BATCHED": "true", "VOXFLEET_STT_WEBSOCKET_COMPRESSION": "true"},
    "after": {},  # the worker's defaults: every change on
    "frames-64": {"VOXFLEET_INPUT_FRAME_MS": "64"},  # and half the trips per caller frame (up to 32 ms later)
}


def process_tree(root: int) -> list[int]:
    """`root` and every process below it (the agent's own helpers would count as its CPU too)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_sum(root: int, reading) -> float:
    """`reading(pid)` (cpu_seconds, rss_mib) summed over the tree; a process that just ended counts 0."""
    total = 0.0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            total += reading(pid)
    return total


def tree_cpu_seconds(root: int) -> float:
    return tree_sum(root, cpu_seconds)


def tree_rss_mib(root: int) -> float:
    return tree_sum(root, rss_mib)


async def call_cycles(caller: CallerBot, cycles: int) -> dict:
    """One caller's part of a level: per cycle a question heard to its end (TTFA, underruns), then a question
    interrupted BARGE_AFTER_S into its answer (TTFA, and the barge-in stop: the caller's first voiced audio to the
    agent's last audio heard)."""
    ttfas, barge_ins, underruns, failures = [], [], 0, 0
    await asyncio.sleep(random.uniform(0, 1.0))  # calls do not all speak on the same tick
    for _ in range(cycles):
        try:
            spoken = await caller.say(QUESTION)
            answer = await caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=10, silence_s=0.5)
            ttfas.append(answer.start - spoken.voice_ended)
            underruns += count_gaps(caller, answer.start, answer.end)
            await asyncio.sleep(0.4)
            spoken = await caller.say(QUESTION)
            started = await caller.heard.wait_for(
                lambda: (caller.voiced_frames(spoken.voice_ended) or [None])[0], timeout=10, what="the answer")
            ttfas.append(started - spoken.voice_ended)
            await asyncio.sleep(max(0.0, started + BARGE_AFTER_S - time.monotonic()))
            interruption = await caller.say(BARGE_IN)
            stopped = await caller.wait_for_agent_silence(after=interruption.voice_started, silence_s=0.15,
                                                          timeout=5)
            barge_ins.append(stopped - interruption.voice_started)
            # The agent answers the interruption too: let that answer end before the next cycle.
            with contextlib.suppress(TimeoutError):
                await caller.wait_for_agent_speech(after=interruption.voice_ended, timeout=10, silence_s=0.5)
            await asyncio.sleep(0.4)
        except TimeoutError:
            failures += 1
    return {"ttfa": ttfas, "barge_in": barge_ins, "underruns": underruns, "failures": failures}


async def monologue(caller: CallerBot, cycles: int) -> dict:
    """For a floor that only listens: the caller speaks as in call_cycles, pausing where it would hear answers."""
    await asyncio.sleep(random.uniform(0, 1.0))
    for _ in range(cycles):
        for line in (QUESTION, QUESTION, BARGE_IN):
            await caller.say(line)
            await asyncio.sleep(2.5)
    return {"ttfa": [], "barge_in": [], "underruns": 0, "failures": 0}


async def agent_present(caller: CallerBot, *, answers: bool) -> None:
    if answers:  # its track is subscribed
        await caller.agent_joined.wait()
        return
    while not caller.room.remote_participants:
        await asyncio.sleep(0.05)


def run_callers(url: str) -> None:
    """Child process (`worker_bench.py --callers URL`): stdin gives one JSON line {"tokens": [...], "cycles": n,
    "answers": bool}; it joins every call, says `ready` once each has its agent in the room, runs the cycles on
    `go` (a monologue where the agent does not answer), then prints `result {json}` (per-call figures) and
    leaves."""

    async def main() -> None:
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        job = json.loads(await reader.readline())
        callers = [CallerBot(url, token) for token in job["tokens"]]
        async with contextlib.AsyncExitStack() as stack:
            for caller in callers:
                await stack.enter_async_context(caller)
            await asyncio.wait_for(asyncio.gather(*(agent_present(c, answers=job["answers"]) for c in callers)), 60)
            print("ready", flush=True)
            await reader.readline()
            script = call_cycles if job["answers"] else monologue
            results = await asyncio.gather(*(script(caller, job["cycles"]) for caller in callers))
            print("result " + json.dumps(results), flush=True)

    asyncio.run(main())


def run_floor_agents(url: str, mode: str = "") -> None:
    """Child process (`worker_bench.py --floor-agents URL`), one agent token a line on stdin: a bare LiveKit
    participant per call that does what the worker does with LiveKit and nothing else. It subscribes to the caller
    at 16 kHz in 32 ms frames, publishes a 24 kHz track through an AudioSource (200 ms queue), answers the end of
    each utterance (FLOOR_VOICED_RMS, then VAD_STOP_S quiet) with pre-rendered audio in 40 ms chunks, and stops
    it (clears the queue) after FLOOR_START_S of caller voice. No Pipecat, no VAD model, no providers.
    Modes (FLOORS): `listen-only` only listens, so the floor's cost splits into receiving (decode, resample,
    frames up through the FFI) and sending (the published track, encoded even when silent); `mute-when-silent`
    mutes its track whenever it has nothing to say (unmuted for each answer): what not encoding silence would
    save, and what it does to the answer's onset and underruns as the caller hears them."""
    publish, mute = mode != "listen-only", mode == "mute-when-silent"
    import numpy as np
    import soxr
    from livekit import rtc

    reply = soxr.resample(synthesize(REPLY), 16000, 24000).astype(np.int16)
    chunk = 24000 * 40 // 1000
    frame_s = 0.032

    async def agent(token: str) -> None:
        room = rtc.Room()
        caller_gone = asyncio.Event()
        room.on("participant_disconnected", lambda _p: caller_gone.set())
        tracks: asyncio.Queue = asyncio.Queue()
        room.on("track_subscribed", lambda track, *_: track.kind == rtc.TrackKind.KIND_AUDIO and
                tracks.put_nowait(track))
        await room.connect(url, token, options=rtc.RoomOptions(auto_subscribe=True))
        source = rtc.AudioSource(24000, 1, queue_size_ms=200)
        track = rtc.LocalAudioTrack.create_audio_track("agent", source)
        if publish:
            options = rtc.TrackPublishOptions()
            options.source = rtc.TrackSource.SOURCE_MICROPHONE
            await room.local_participant.publish_track(track, options)
            if mute:
                track.mute()
        playing: asyncio.Task | None = None

        async def play() -> None:
            if mute:
                track.unmute()
            try:
                for offset in range(0, len(reply), chunk):
                    part = reply[offset:offset + chunk]
                    await source.capture_frame(rtc.AudioFrame(part.tobytes(), 24000, 1, len(part)))
                await source.wait_for_playout()
            finally:
                if mute:
                    track.mute()

        async def listen() -> None:
            nonlocal playing
            stream = rtc.AudioStream(await tracks.get(), sample_rate=16000, num_channels=1, frame_size_ms=32)
            voiced_s = quiet_s = 0.0
            async for event in stream:
                samples = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.float32)
                if float(np.sqrt(np.mean(samples ** 2))) >= FLOOR_VOICED_RMS:
                    voiced_s, quiet_s = voiced_s + frame_s, 0.0
                    if voiced_s >= FLOOR_START_S and playing is not None and not playing.done():
                        playing.cancel()
                        source.clear_queue()
                    continue
                quiet_s += frame_s
                if voiced_s and quiet_s >= VAD_STOP_S:
                    voiced_s = 0.0
                    if publish and (playing is None or playing.done()):
                        playing = asyncio.create_task(play())

        listening = asyncio.create_task(listen())
        await caller_gone.wait()
        listening.cancel()
        if playing is not None:
            playing.cancel()
        await room.disconnect()

    async def main() -> None:
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        agents: set[asyncio.Task] = set()
        print("ready", flush=True)
        while line := (await reader.readline()).decode().strip():
            task = asyncio.create_task(agent(line))
            agents.add(task)
            task.add_done_callback(agents.discard)
            task.add_done_callback(lambda done: done.cancelled() or not done.exception() or print(
                f"floor agent failed: {done.exception()!r}", file=sys.stderr, flush=True))
        for task in list(agents):
            task.cancel()

    asyncio.run(main())


async def run_level(region, tokens: list[str], cycles: int, agent_root: int, *, answers: bool = True) -> dict:
    """One level: callers join (in their own processes), then the agent's tree CPU is read around the cycles."""
    children = []
    for start in range(0, len(tokens), CALLERS_PER_PROCESS):
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--callers", region.url, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=1 << 24)
        child.stdin.write(json.dumps({"tokens": tokens[start:start + CALLERS_PER_PROCESS], "cycles": cycles,
                                      "answers": answers}).encode() + b"\n")
        await child.stdin.drain()
        children.append(child)
    try:
        for child in children:
            line = await asyncio.wait_for(child.stdout.readline(), 90)
            assert line.strip() == b"ready", f"caller process: {line[:200]!r}"
        cpu0, wall0 = tree_cpu_seconds(agent_root), time.monotonic()
        for child in children:
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        callers_cpu0 = sum(tree_cpu_seconds(child.pid) for child in children)
        results, callers_cpu = [], 0.0
        for child in children:
            status, _, body = (await asyncio.wait_for(child.stdout.readline(), 60 + 40 * cycles)).decode().partition(" ")
            assert status == "result", status
            results.extend(json.loads(body))
            callers_cpu += tree_cpu_seconds(child.pid)  # read before it leaves its rooms (~1 s)
        cpu1, wall1 = tree_cpu_seconds(agent_root), time.monotonic()
        rss = tree_rss_mib(agent_root)
    finally:
        for child in children:
            with contextlib.suppress(Exception):
                child.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.wait(), 20)
            if child.returncode is None:
                child.kill()
    level = len(tokens)
    ttfas = [t for r in results for t in r["ttfa"]]
    barge = [t for r in results for t in r["barge_in"]]
    row = {"calls": level, "cpu_per_call_pct": round(100 * (cpu1 - cpu0) / (level * (wall1 - wall0)), 2),
            "cpu_total_pct": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1), "rss_mib": round(rss, 1),
            "callers_cpu_total_pct": round(100 * (callers_cpu - callers_cpu0) / (wall1 - wall0), 1),
            "ttfa_p50_ms": ms(pct(ttfas, 50)), "ttfa_p95_ms": ms(pct(ttfas, 95)),
            "barge_in_p50_ms": ms(pct(barge, 50)), "barge_in_p95_ms": ms(pct(barge, 95)),
            "underruns": sum(r["underruns"] for r in results), "failures": sum(r["failures"] for r in results),
            "samples": len(ttfas), "seconds": round(wall1 - wall0, 1), "load_avg": os.getloadavg()[0]}
    return {key: None if isinstance(value, float) and value != value else value  # no samples: null, not NaN
            for key, value in row.items()}


def judge_ladder(rows: list[dict], idle_rss: float) -> dict:
    """The latency rule: TTFA p95 and barge-in stop p95 within 20 % of the one-call level, no failed turn."""
    for row in rows:
        row["rss_per_call_mib"] = round((row["rss_mib"] - idle_rss) / row["calls"], 1)
        # Beyond the first level (LiveKit's runtime and buffers start with the first room): what one more call adds.
        if row is not rows[0]:
            row["rss_marginal_per_call_mib"] = round((row["rss_mib"] - rows[0]["rss_mib"])
                                                     / (row["calls"] - rows[0]["calls"]), 1)
    base = rows[0] if rows else None
    sustained = None
    for row in rows:
        if not row["samples"] or not base["samples"]:  # a floor that only listens: cost, no latency
            row["meets_latency_rule"] = None
            continue
        row["meets_latency_rule"] = bool(row["failures"] == 0
                                         and row["ttfa_p95_ms"] <= 1.2 * base["ttfa_p95_ms"]
                                         and row["barge_in_p95_ms"] is not None
                                         and row["barge_in_p95_ms"] <= 1.2 * (base["barge_in_p95_ms"] or 0))
        if row["meets_latency_rule"]:
            sustained = row
    return {"levels": rows, "idle_rss_mib": round(idle_rss, 1), "baseline_calls": base["calls"] if base else None,
            "highest_sustained_calls": sustained["calls"] if sustained else 0,
            "cpu_per_call_pct_at_highest": sustained["cpu_per_call_pct"] if sustained else None}


def broke(row: dict, base: dict) -> bool:
    return (row["failures"] > BROKEN_FAILURES * row["calls"] * 2
            or bool(row["samples"] and base["samples"] and row["ttfa_p95_ms"] > BROKEN_RATIO * base["ttfa_p95_ms"]))


@dataclass
class DensityAgent:
    """One agent under the ladder: a floor process (FLOORS) or a voxfleet worker (VARIANTS), up for the whole run."""
    name: str
    root: int  # the pid whose process tree is measured
    worker: WorkerUnderTest | None = None
    floor: subprocess.Popen | None = None
    fakes: subprocess.Popen | None = None
    idle_rss: float = 0.0
    idle_cpu_pct: float = 0.0
    failed_level: dict | None = None
    rows: list = dataclass_field(default_factory=list)
    broken: bool = False

    def take(self, region, rooms: list[str]) -> None:
        for room in rooms:
            if self.worker is not None:
                assert self.worker.dispatch(room=room).status_code == 201, self.worker.log_tail()
            else:
                self.floor.stdin.write(mint_token(region, room=room, identity=f"agent-{uuid.uuid4().hex[:6]}")
                                       .encode() + b"\n")
                self.floor.stdin.flush()

    async def settle(self) -> None:
        """The level's calls end (callers left) before anything else is measured."""
        if self.worker is None:
            await asyncio.sleep(1.0)
            return
        deadline = time.monotonic() + 40
        while self.worker.get("/v1/load").json()["active"] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        if self.floor is not None:
            with contextlib.suppress(Exception):
                self.floor.stdin.close()
            try:
                self.floor.wait(10)
            except subprocess.TimeoutExpired:
                self.floor.kill()
        if self.fakes is not None:  # the fakes' process serves until its stdin closes
            self.fakes.stdin.close()
            try:
                self.fakes.wait(10)
            except subprocess.TimeoutExpired:
                self.fakes.kill()


def start_density_agent(region, state: Path, name: str, *, max_calls: int, providers: str) -> DensityAgent:
    if name in FLOORS:
        floor = subprocess.Popen([sys.executable, __file__, "--floor-agents", region.url, *FLOORS[name]],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        assert floor.stdout.readline().strip() == b"ready"
        return DensityAgent(name, floor.pid, floor=floor)
    fakes = None
    if providers == "cloud":
        # The fakes in a process of their own: in this one they would wait for the ladder's own work (and the
        # GIL), and their delays would count as the worker's TTFA.
        fakes = subprocess.Popen([sys.executable, "-m", "tests.fakes", "--transcript", QUESTION, "--reply", REPLY],
                                 cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        served = json.loads(fakes.stdout.readline())
        spec = provider_spec(served["pipeline"], detector="speech-timeout", speech_timeout=0.0)
        env = {**served["env"], **VARIANTS[name]}
    else:
        spec, env = offline_spec(greeting=""), dict(VARIANTS[name])
    spec["scaling"] = {"sessionsPerWorker": max_calls}
    spec["limits"] = {"maxSessionSeconds": 3600, "idleTimeoutSeconds": 600}
    worker = WorkerUnderTest.start(state, spec, livekit=region, env=env)
    return DensityAgent(name, worker.process.pid, worker=worker, fakes=fakes)


async def density_figures(region, state: Path, args) -> dict:
    """Every ladder in this run, interleaved: all agents (the floors, then one worker per variant of issue 19's
    switches) are up from the start, and each level runs on each agent in turn, so a change of the shared
    machine's load falls on all of them alike. An agent's ladder stops at its first level that broke. Ratios to
    the floor and to the `before` variant, level by level."""
    names = [*args.floors, *args.variants]
    started = time.monotonic()
    agents = []
    try:
        for name in names:
            agents.append(start_density_agent(region, state, name, max_calls=max(args.levels),
                                              providers=args.providers))
        await asyncio.sleep(2.0)  # the warm starts' last allocations settle before the idle readings
        idle_cpu0, idle_wall0 = [tree_cpu_seconds(agent.root) for agent in agents], time.monotonic()
        await asyncio.sleep(IDLE_READING_S)
        for agent, cpu0 in zip(agents, idle_cpu0):
            agent.idle_rss = tree_rss_mib(agent.root)
            # What the agent costs with no call at all (its loop, timers, LiveKit's runtime): the part of the
            # one-call level's CPU that is not the call's.
            agent.idle_cpu_pct = round(100 * (tree_cpu_seconds(agent.root) - cpu0) / (time.monotonic() - idle_wall0), 2)
            print(f"  {agent.name:<12} idle: cpu {agent.idle_cpu_pct} %, rss {agent.idle_rss:.1f} MiB", flush=True)
        for level in args.levels:
            for agent in agents:
                if agent.broken:
                    continue
                began = time.monotonic()
                rooms = [f"dense-{agent.name}-{level}-{i}-{uuid.uuid4().hex[:6]}" for i in range(level)]
                agent.take(region, rooms)
                tokens = [mint_token(region, room=room, identity=f"caller-{uuid.uuid4().hex[:6]}") for room in rooms]
                # Levels under 4 calls run more cycles: the latency rule's baseline is their p95.
                try:
                    row = await run_level(region, tokens, args.density_cycles * max(1, 4 // level), agent.root,
                                          answers=agent.name != "floor-listen")
                except (AssertionError, TimeoutError, ValueError) as error:  # callers never got going: it broke
                    agent.broken = True
                    agent.failed_level = {"calls": level, "error": f"{type(error).__name__}: {error}"[:300]}
                    print(f"  {agent.name}: {level} calls did not run ({agent.failed_level['error']}); "
                          f"its ladder stops here", flush=True)
                    await agent.settle()
                    continue
                agent.rows.append(row)
                print(f"  {agent.name:<12} {level:>3} calls: cpu/call {row['cpu_per_call_pct']:5.2f} % "
                      f"(total {row['cpu_total_pct']} %), ttfa p50/p95 {row['ttfa_p50_ms']}/{row['ttfa_p95_ms']} ms, "
                      f"barge-in p50/p95 {row['barge_in_p50_ms']}/{row['barge_in_p95_ms']} ms, "
                      f"underruns {row['underruns']}, failures {row['failures']}, rss {row['rss_mib']} MiB, "
                      f"callers' own cpu {row['callers_cpu_total_pct']} %, load {row['load_avg']:.1f}, "
                      f"level took {time.monotonic() - began:.0f} s", flush=True)
                await agent.settle()
                if broke(row, agent.rows[0]):
                    agent.broken = True
                    print(f"  {agent.name}: broke at {level} calls; its ladder stops here", flush=True)
    finally:
        for agent in agents:
            agent.stop()
    ladders = {agent.name: {**judge_ladder(agent.rows, agent.idle_rss), "idle_cpu_pct": agent.idle_cpu_pct,
                            "failed_level": agent.failed_level}
               for agent in agents if agent.rows}
    comparison = {}
    for name, ladder in ladders.items():
        comparison[name] = {}
        for row in ladder["levels"]:
            same = {other: next((r for r in ladders[other]["levels"] if r["calls"] == row["calls"]), None)
                    for other in ("floor", "before") if other in ladders and other != name}
            comparison[name][row["calls"]] = {
                f"cpu_ratio_to_{other}": round(row["cpu_per_call_pct"] / r["cpu_per_call_pct"], 2)
                for other, r in same.items() if r and r["cpu_per_call_pct"]}
    best = ladders.get("after") or (ladders[args.variants[-1]] if args.variants else None)
    figures = {"levels": args.levels, "cycles": args.density_cycles, "ladders": ladders, "cpu_ratios": comparison,
               "goal_le_4pct_per_call_at_highest_sustained": bool(
                   best and best["cpu_per_call_pct_at_highest"] is not None
                   and best["cpu_per_call_pct_at_highest"] <= 4.0),
               "seconds": round(time.monotonic() - started, 1)}
    print(f"density: highest sustained calls {({n: l['highest_sustained_calls'] for n, l in ladders.items()})}, "
          f"cpu/call there {({n: l['cpu_per_call_pct_at_highest'] for n, l in ladders.items()})} %, "
          f"ladders took {figures['seconds']} s", flush=True)
    return figures


async def measure_process_per_call(region, state: Path, levels: list[int], turns: int) -> dict:
    """The alternative process model for comparison: every call in its own warm process (one slot each)."""
    spec = offline_spec(greeting="", scaling={"sessionsPerWorker": 1},
                        limits={"maxSessionSeconds": 3600, "idleTimeoutSeconds": 600})
    rows = []
    for level in levels:
        workers = [WorkerUnderTest.start(state, spec, livekit=region) for _ in range(level)]
        try:
            idle_rss = sum(rss_mib(w.process.pid) for w in workers)
            rooms = [f"proc-{level}-{i}-{uuid.uuid4().hex[:6]}" for i in range(level)]
            for worker, room in zip(workers, rooms):
                assert worker.dispatch(room=room).status_code == 201
            cpu0, wall0 = sum(cpu_seconds(w.process.pid) for w in workers), time.monotonic()
            results = await asyncio.gather(*(ask_turns(region, room, turns, greeting=False, gap_s=1.0)
                                             for room in rooms))
            cpu1, wall1 = sum(cpu_seconds(w.process.pid) for w in workers), time.monotonic()
            ttfas = [t for r in results for t in r["ttfa"]]
            rows.append({"sessions": level,
                         "cpu_per_session_pct": round(100 * (cpu1 - cpu0) / (level * (wall1 - wall0)), 2),
                         "ttfa_p50_ms": ms(pct(ttfas, 50)), "ttfa_p95_ms": ms(pct(ttfas, 95)),
                         "underruns": sum(r["underruns"] for r in results),
                         "rss_per_session_mib": round(sum(rss_mib(w.process.pid, "VmHWM") for w in workers) / level, 1),
                         "idle_rss_per_process_mib": round(idle_rss / level, 1)})
            print(f"  process-per-call {level:>3}: {rows[-1]}", flush=True)
        finally:
            for worker in workers:
                worker.stop()
    return {"levels": rows}


async def dispatch_figures(region, state: Path, count: int) -> dict:
    """Dispatch -> greeting heard from a warm worker, beside the bare LiveKit floor measured in the same run."""
    print("dispatch -> greeting heard: bare LiveKit participant (the floor)...", flush=True)
    floor = await measure_bare_join(region, count)
    bare = floor["heard"]
    print(f"  {summary('bare join->greeting', bare)}; stages p50 {floor['stage_p50_ms']}")
    print("dispatch -> greeting heard: voxfleet...", flush=True)
    dispatch = await measure_dispatch(region, state, count)
    print(f"  {summary('warm dispatch->greeting', dispatch['warm'])}; cold process->greeting {ms(dispatch['cold'])} ms")
    print(f"  voxfleet adds p50 {ms(pct(dispatch['warm'], 50) - pct(bare, 50))} ms, "
          f"p95 {ms(pct(dispatch['warm'], 95) - pct(bare, 95))} ms to the floor")
    return {"bare_join_to_greeting": summary("bare", bare), "bare_join_stages_p50_ms": floor["stage_p50_ms"],
            "warm_dispatch_to_greeting": summary("warm", dispatch["warm"]),
            "voxfleet_adds_to_join_floor_ms": {"p50": ms(pct(dispatch["warm"], 50) - pct(bare, 50)),
                                               "p95": ms(pct(dispatch["warm"], 95) - pct(bare, 95))},
            "cold_process_to_greeting_ms": ms(dispatch["cold"]),
            "goal_warm_p95_le_300ms": pct(dispatch["warm"], 95) <= 0.3}


async def main(args) -> dict:
    state = Path(tempfile.mkdtemp(prefix="voxfleet-bench-"))
    region, servers = start_livekit(state)
    try:
        if args.only_dispatch:
            return {"bench": "worker", **await dispatch_figures(region, state, args.dispatches)}
        if args.only_density:
            return {"bench": "worker", "density": await density_figures(region, state, args)}
        print("transport (two one-way legs through livekit-server)...", flush=True)
        transport = await measure_two_legs(region, count=10, gap_s=0.3)
        rtt = statistics.median(transport)
        print(f"  {summary('two legs', transport)}")
        echo = await measure_echo_round_trip(region)
        print(f"  {summary('echo round trip', echo)}")
        print("bare Pipecat floor...", flush=True)
        floor = await measure_floor(region, args.turns)
        print(f"  {summary('floor ttfa', floor['ttfa'])} underruns={floor['underruns']}")
        print("voxfleet, zero-delay providers...", flush=True)
        zero = await measure_voxfleet(region, state, args.turns, stt_ms=0, ttft_ms=0, ttfb_ms=0)
        print(f"  {summary('voxfleet zero-delay ttfa', zero['ttfa'])} underruns={zero['underruns']}; "
              f"worker stage means {zero['stages_ms']}")
        delays = {"stt_ms": 150.0, "ttft_ms": 200.0, "ttfb_ms": 120.0}
        fixed_s = sum(delays.values()) / 1000
        print(f"voxfleet, providers at {delays}...", flush=True)
        timed = await measure_voxfleet(region, state, args.turns, **delays)
        overhead = [t - fixed_s - VAD_STOP_S - rtt for t in timed["ttfa"]]
        print(f"  {summary('overhead (speech-timeout)', overhead)}; worker stage means {timed['stages_ms']}")
        # The same subtraction applied to the bare Pipecat floor (no providers): what the formula leaves over for
        # any Pipecat pipeline here (Silero's trailing edge, VAD frame granularity, the output's first chunk).
        floor_overhead = [t - VAD_STOP_S - rtt for t in floor["ttfa"]]
        print(f"  {summary('the floor by the same formula', floor_overhead)}")
        smart = None
        if not args.quick:
            print("voxfleet, same providers, smart-turn...", flush=True)
            smart = await measure_voxfleet(region, state, max(10, args.turns // 2), detector="smart-turn", **delays)
            print(f"  {summary('ttfa smart-turn', smart['ttfa'])}")
        dispatch = await dispatch_figures(region, state, args.dispatches)
        density = await density_figures(region, state, args)
        per_call = None
        if args.process_per_call:
            print("density, one process per call (the alternative model)...", flush=True)
            per_call = await measure_process_per_call(region, state, args.process_per_call, args.density_turns)
    finally:
        from voxfleet.world import processes

        for server in servers:
            processes.stop_group(server.pid)
    floor_p50 = pct(floor["ttfa"], 50)
    result = {
        "bench": "worker",
        "transport_two_legs_ms": summary("two legs", transport),
        "echo_round_trip_ms": summary("echo round trip", echo),
        "floor_ttfa": summary("floor", floor["ttfa"]),
        "voxfleet_zero_delay_ttfa": summary("zero", zero["ttfa"]),
        "voxfleet_adds_to_floor_p50_ms": ms(pct(zero["ttfa"], 50) - floor_p50),
        "provider_delays_ms": delays,
        "overhead_speech_timeout": summary("overhead", overhead),
        "floor_overhead_same_formula": summary("floor overhead", floor_overhead),
        "overhead_beyond_floor_p95_ms": ms(pct(overhead, 95) - pct(floor_overhead, 95)),
        "worker_stage_means_ms": {"zero": zero["stages_ms"], "timed": timed["stages_ms"],
                                  "smart_turn": smart["stages_ms"] if smart else None},
        "smart_turn_added_p50_ms": (ms(pct(smart["ttfa"], 50) - pct(timed["ttfa"], 50)) if smart else None),
        **{key: value for key, value in dispatch.items() if not key.startswith("goal")},
        "density": density,
        "process_per_call": per_call,
        "underruns": {"floor": floor["underruns"], "zero": zero["underruns"], "timed": timed["underruns"]},
        "goals": {"overhead_p95_le_50ms": pct(overhead, 95) <= 0.05,
                  "adds_le_10ms_p50": pct(zero["ttfa"], 50) - floor_p50 <= 0.010,
                  "warm_p95_le_300ms": dispatch["goal_warm_p95_le_300ms"],
                  "le_4pct_core_per_call": density["goal_le_4pct_per_call_at_highest_sustained"]},
    }
    return result


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=50, help="turns per latency measurement (>= 50 for p95)")
    parser.add_argument("--dispatches", type=int, default=20)
    parser.add_argument("--levels", "--density", dest="levels", default="1,4,8,16,24,32,50",
                        help="density ladder: concurrent calls per level, comma-separated, ascending")
    parser.add_argument("--density-cycles", type=int, default=2,
                        help="per call and level: a question heard to its end, then one interrupted")
    parser.add_argument("--variants", default="before,after",
                        help=f"worker variants to ladder after the floor, comma-separated, of {','.join(VARIANTS)}")
    parser.add_argument("--floors", default="floor", help=f"floor ladders first, of {','.join(FLOORS)} ('' none)")
    parser.add_argument("--providers", default="cloud", choices=["cloud", "offline"],
                        help="density: providers at a distance (the goal's measure) or offline models in the worker")
    parser.add_argument("--density-turns", type=int, default=6, help="turns per call of --process-per-call")
    parser.add_argument("--process-per-call", default="1,2,4",
                        help="also measure one warm process per call at these concurrencies ('' to skip)")
    parser.add_argument("--quick", action="store_true", help="fewer turns, no smart-turn run")
    parser.add_argument("--only-dispatch", action="store_true", help="just dispatch -> greeting, beside its floor")
    parser.add_argument("--only-density", action="store_true", help="just the density ladders")
    args = parser.parse_args(argv)
    args.levels = [int(level) for level in args.levels.split(",")]
    args.variants = [name for name in args.variants.split(",") if name]
    args.floors = [name for name in args.floors.split(",") if name]
    unknown = sorted(set(args.variants) - set(VARIANTS)) + sorted(set(args.floors) - set(FLOORS))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {sorted(VARIANTS)}")
    args.process_per_call = [int(level) for level in args.process_per_call.split(",") if level]
    if args.quick:
        args.turns, args.dispatches, args.density_turns, args.density_cycles = 12, 6, 3, 1
    return args


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-join":
        run_bare_join(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--callers":
        run_callers(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--floor-agents":
        run_floor_agents(*sys.argv[2:4])
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-agent":
        run_bare_agent(*sys.argv[2:5])
        sys.exit(0)
    figures = asyncio.run(main(_args(sys.argv[1:])))
    print("BENCH_JSON " + json.dumps(figures))
