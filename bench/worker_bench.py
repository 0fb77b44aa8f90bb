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
6. density: worker CPU seconds per session-second, peak RSS per session, and the highest concurrency with neither
   audio underruns nor TTFA growth over 20 % (goal: <= 4 % of a core per session), with the providers at a
   distance (cloud fakes: the platform's own cost, the goal's measure), with the offline models computing in the
   worker, and with larger caller frames (--density-frame-ms).

Callers, livekit-server and the worker share this machine (and, on a shared box, other people's work): the
worker's own CPU is read from /proc. Prints the figures and one JSON line (prefix `BENCH_JSON `).

    .venv/bin/python bench/worker_bench.py [--turns 50] [--density 1,2,4,8] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
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


def provider_spec(fakes, *, detector: str, speech_timeout: float, greeting: str = "") -> dict:
    spec = offline_spec(greeting=greeting, intents=[], scaling={"sessionsPerWorker": 4},
                        limits={"maxSessionSeconds": 3600, "idleTimeoutSeconds": 600})
    spec["pipeline"] = fakes.pipeline_spec()
    spec["turnDetection"] = {"detector": detector, "vad": {"stopMs": round(VAD_STOP_S * 1000)},
                             "timeouts": {"speechTimeoutMs": round(speech_timeout * 1000), "maxTurnWaitMs": 3000}}
    return spec


async def measure_voxfleet(region, state: Path, turns: int, *, stt_ms: float, ttft_ms: float, ttfb_ms: float,
                           detector: str = "speech-timeout", speech_timeout: float = 0.0) -> dict:
    from tests.fakes.openai_server import Script
    from tests.fakes.providers import start_fake_providers

    fakes = start_fake_providers(llm_ttft_ms=ttft_ms, stt_final_delay_ms=stt_ms, tts_ttfb_ms=ttfb_ms,
                                 transcripts=[QUESTION], script=Script(reply=REPLY))
    worker = WorkerUnderTest.start(state, provider_spec(fakes, detector=detector, speech_timeout=speech_timeout),
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


async def measure_density(region, state: Path, levels: list[int], turns: int, *, providers: str,
                          input_frame_ms: int = 32) -> dict:
    """N concurrent sessions on one worker: CPU/session-second, RSS/session, TTFA growth, underruns.

    providers "offline": PocketSphinx and eSpeak NG decode and synthesise inside the worker (the test default,
    model compute on the worker's CPU); "cloud": the Deepgram, OpenAI and Cartesia services talk to local fakes
    over their wire protocols, as a production worker talks to its providers, so the worker's CPU is the
    platform's own: transport, resampling, VAD, turn taking, the provider clients. input_frame_ms is the caller
    audio frame the worker reads (VOXFLEET_INPUT_FRAME_MS): larger frames mean fewer trips through the pipeline
    per second, at up to one frame of added end-of-speech latency."""
    fakes = None
    if providers == "cloud":
        from tests.fakes.openai_server import Script
        from tests.fakes.providers import start_fake_providers

        fakes = start_fake_providers(transcripts=[QUESTION], script=Script(reply=REPLY))
        spec = provider_spec(fakes, detector="speech-timeout", speech_timeout=0.0)
        env = fakes.secret_env()
    else:
        spec, env = offline_spec(greeting=""), {}
    env["VOXFLEET_INPUT_FRAME_MS"] = str(input_frame_ms)
    spec["scaling"] = {"sessionsPerWorker": max(levels)}
    spec["limits"] = {"maxSessionSeconds": 3600, "idleTimeoutSeconds": 600}
    worker = WorkerUnderTest.start(state, spec, livekit=region, env=env)
    pid = worker.process.pid
    rows = []
    try:
        idle_rss = rss_mib(pid)
        for level in levels:
            rooms = [f"dense-{level}-{i}-{uuid.uuid4().hex[:6]}" for i in range(level)]
            for room in rooms:
                assert worker.dispatch(room=room).status_code == 201, worker.log_tail()
            cpu0, wall0 = cpu_seconds(pid), time.monotonic()
            results = await asyncio.gather(*(ask_turns(region, room, turns, greeting=False, gap_s=1.0)
                                             for room in rooms))
            cpu1, wall1 = cpu_seconds(pid), time.monotonic()
            ttfas = [t for r in results for t in r["ttfa"]]
            session_seconds = level * (wall1 - wall0)
            rows.append({"sessions": level, "cpu_per_session_pct": round(100 * (cpu1 - cpu0) / session_seconds, 2),
                         "ttfa_p50_ms": ms(pct(ttfas, 50)), "ttfa_p95_ms": ms(pct(ttfas, 95)),
                         "underruns": sum(r["underruns"] for r in results),
                         "failures": sum(r["failures"] for r in results),
                         "rss_per_session_mib": round((rss_mib(pid, "VmHWM") - idle_rss) / level, 1)})
            print(f"  density {level:>3} sessions: {rows[-1]}", flush=True)
            deadline = time.monotonic() + 30
            while worker.get("/v1/load").json()["active"] and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
    finally:
        worker.stop()
        if fakes:
            fakes.stop()
    base = rows[0]["ttfa_p50_ms"] if rows else float("nan")
    sustained = max((r["sessions"] for r in rows if r["underruns"] == 0 and r["failures"] == 0
                     and r["ttfa_p50_ms"] <= 1.2 * base), default=0)
    return {"levels": rows, "idle_rss_mib": round(idle_rss, 1), "max_sustained_sessions": sustained}


async def density_figures(region, state: Path, args) -> dict:
    """Density with the providers at a distance (the goal's measure: what the platform itself costs per call),
    with the offline models computing inside the worker, and with each --density-frame-ms caller frame size."""
    figures = {}
    for providers in ("cloud", "offline"):
        print(f"density ({providers} providers)...", flush=True)
        figures[providers] = await measure_density(region, state, args.density, args.density_turns,
                                                   providers=providers)
    for frame_ms in args.density_frame_ms:
        print(f"density (cloud providers, {frame_ms} ms caller frames)...", flush=True)
        figures[f"cloud_{frame_ms}ms_frames"] = await measure_density(
            region, state, args.density, args.density_turns, providers="cloud", input_frame_ms=frame_ms)
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
                  "le_4pct_core_per_session": all(r["cpu_per_session_pct"] <= 4.0
                                                  for r in density["cloud"]["levels"])},
    }
    return result


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=50, help="turns per latency measurement (>= 50 for p95)")
    parser.add_argument("--dispatches", type=int, default=20)
    parser.add_argument("--density", default="1,2,4,8", help="concurrent sessions to try, comma-separated")
    parser.add_argument("--density-turns", type=int, default=6)
    parser.add_argument("--process-per-call", default="1,2,4",
                        help="also measure one warm process per call at these concurrencies ('' to skip)")
    parser.add_argument("--quick", action="store_true", help="fewer turns, no smart-turn run")
    parser.add_argument("--only-dispatch", action="store_true", help="just dispatch -> greeting, beside its floor")
    parser.add_argument("--density-frame-ms", default="64",
                        help="also measure cloud density with these caller frame sizes in ms ('' to skip)")
    parser.add_argument("--only-density", action="store_true", help="just density, cloud and offline providers")
    args = parser.parse_args(argv)
    args.density = [int(level) for level in args.density.split(",")]
    args.density_frame_ms = [int(size) for size in args.density_frame_ms.split(",") if size]
    args.process_per_call = [int(level) for level in args.process_per_call.split(",") if level]
    if args.quick:
        args.turns, args.dispatches, args.density_turns = 12, 6, 3
    return args


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-join":
        run_bare_join(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-agent":
        run_bare_agent(*sys.argv[2:5])
        sys.exit(0)
    figures = asyncio.run(main(_args(sys.argv[1:])))
    print("BENCH_JSON " + json.dumps(figures))
