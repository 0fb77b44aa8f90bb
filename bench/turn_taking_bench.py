"""Turn-taking benchmark (issue 20): how soon the offline demo answers, as heard, and how often it answers a caller
who had not finished, for the demo's turn settings of today and the candidates, in one run.

A real `voxfleet worker` per setting (the offline demo's pipeline: PocketSphinx, the scripted LLM, eSpeak; its
intents with plain replies, no tool), each answering calls in a real livekit-server room. Settings take turns,
call by call, so a busy neighbour on the machine weighs on all of them alike. In each call the caller (eSpeak
lines, as every test caller) says, each into silence:

- complete lines: heard TTFA = the caller's last voiced sample sent -> the agent's first voiced frame heard;
- lines with a natural pause inside ("my order number is ... seven three oh one", pauses of 0.4 and 0.6 s): a
  premature turn end is an answer to the first half, i.e. agent audio heard before the whole line was said
  (+0.25 s: no turn end is that fast), or more than one reply to the line. Interruptions are off in the bench
  agent, so an answer to the first half cannot be silently cancelled by the second and go uncounted.

Prints per setting TTFA p50/p95, premature turn ends / pause lines and unanswered lines, each setting's p50 as a
ratio to today's (the same run's baseline), and one `BENCH_JSON` line.

    .venv/bin/python bench/turn_taking_bench.py                  # 2 rounds of every setting
    .venv/bin/python bench/turn_taking_bench.py --rounds 1 --settings today,smart-turn --verbose
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from tests.callers.caller_bot import CallerBot, mint_token, synthesize  # noqa: E402
from tests.worker.worker_harness import WorkerUnderTest  # noqa: E402

# The offline demo's turn settings before this issue (the baseline), and the candidates.
SETTINGS: dict[str, dict[str, Any]] = {
    "today": {"detector": "speech-timeout", "vad": {"stopMs": 200}, "timeouts": {"speechTimeoutMs": 400}},
    # Half the speech timeout: 200 ms sooner, but a pause 200 ms shorter ends the turn.
    "timeout-200": {"detector": "speech-timeout", "vad": {"stopMs": 200}, "timeouts": {"speechTimeoutMs": 200}},
    # The same, and the caller's resumed voice counts after 64 ms instead of 200: a pending turn end is called off
    # that much sooner when a pause ends (Pipecat drops it at the VAD's start), which wins back most of the margin.
    "timeout-200-start-64": {"detector": "speech-timeout", "vad": {"stopMs": 200, "startMs": 64},
                             "timeouts": {"speechTimeoutMs": 200}},
    "short-timeout": {"detector": "speech-timeout", "vad": {"stopMs": 150}, "timeouts": {"speechTimeoutMs": 150}},
    "smart-turn": {"detector": "smart-turn", "vad": {"stopMs": 200}},
    "smart-turn-1s": {"detector": "smart-turn", "vad": {"stopMs": 200}, "timeouts": {"maxTurnWaitMs": 1000}},
}
DEFAULT_SETTINGS = "today,timeout-200,timeout-200-start-64,smart-turn"
COMPLETE_LINES = ["what are your opening hours", "where is my order", "when do you close",
                  "thank you goodbye", "what time do you open"]
# (first half, pause seconds, second half): a caller who stops mid-sentence to think or read a number.
PAUSE_LINES = [(first, pause_s, second) for pause_s in (0.4, 0.6)
               for first, second in (("my order number is", "seven three oh one"),
                                     ("i would like to know your", "opening hours"),
                                     ("where is", "my order please"))]
REPLIES = {"hours": "We open at nine.", "order-status": "Let me check that order.", "goodbye": "Goodbye!"}
NOT_THAT_FAST_S = 0.25  # heard sooner than this after the line's end, an answer was to an earlier turn end
REPLY_GAP_S = 0.9  # quiet inside one reply stays under this (eSpeak's sentence pauses are ~0.3 s)
SETTLE_S = 1.3  # quiet this long after a line: its replies are all in (one reply has no gap over REPLY_GAP_S)
# After a pause line a second reply (to its second half) may follow the first by seconds: wait longer, so it is
# counted here and not heard during the next line.
PAUSE_SETTLE_S = 3.0
LOADED_S = 20.0


def demo_spec(turn_detection: dict[str, Any]) -> dict[str, Any]:
    """The offline demo's agent (examples/offline-demo.yaml) with these turn settings, no tools, short replies."""
    spec = yaml.safe_load((ROOT / "examples" / "offline-demo.yaml").read_text())["spec"]
    spec.pop("tools", None)
    spec["intents"] = [{"name": i["name"], "keywords": i["keywords"], "reply": REPLIES[i["name"]]}
                       for i in spec["intents"] if i["name"] in REPLIES]
    spec.update(turnDetection=turn_detection, interruptions={"enabled": False}, regions=[{"name": "us-east"}],
                scaling={"sessionsPerWorker": 2}, observability={"recordTranscripts": False},
                limits={"maxSessionSeconds": 600, "idleTimeoutSeconds": 120})
    return spec


@dataclass
class Figures:
    ttfa_s: list[float] = field(default_factory=list)
    pause_lines: int = 0
    premature: int = 0
    unanswered: int = 0
    lines: int = 0

    def summary(self) -> dict[str, Any]:
        def pct(q: float) -> float | None:
            if not self.ttfa_s:
                return None
            ordered = sorted(self.ttfa_s)
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

        return {"ttfa_n": len(self.ttfa_s), "ttfa_p50_ms": pct(0.5), "ttfa_p95_ms": pct(0.95),
                "ttfa_mean_ms": round(statistics.fmean(self.ttfa_s) * 1000, 1) if self.ttfa_s else None,
                "premature": self.premature, "pause_lines": self.pause_lines, "unanswered": self.unanswered,
                "lines": self.lines}


async def _replies_after(caller: CallerBot, since: float, settle_s: float = SETTLE_S) -> list[tuple[float, float]]:
    """The agent's replies (first, last voiced frame heard) after `since`, once `settle_s` of quiet follows them
    (or LOADED_S passed without any)."""
    deadline = since + LOADED_S
    while True:
        voiced = caller.voiced_frames(since)
        now = time.monotonic()
        if (voiced and now - voiced[-1] >= settle_s) or (not voiced and now >= deadline):
            break
        await asyncio.sleep(0.05)
    replies: list[tuple[float, float]] = []
    for at in voiced:
        if replies and at - replies[-1][1] < REPLY_GAP_S:
            replies[-1] = (replies[-1][0], at)
        else:
            replies.append((at, at))
    return replies


def _shown(replies: list[tuple[float, float]], since: float) -> str:
    return " ".join(f"[{(a - since) * 1000:.0f}..{(b - since) * 1000:.0f}]" for a, b in replies) or "none"


async def one_call(region, worker: WorkerUnderTest, figures: Figures, *, verbose: bool = False) -> None:
    room = f"bench-turns-{uuid.uuid4().hex[:8]}"
    reply = worker.dispatch(room=room)
    assert reply.status_code == 201, reply.text
    async with CallerBot(region.url, mint_token(region, room=room, identity=f"caller-{uuid.uuid4().hex[:6]}")) \
            as caller:
        greeting = await caller.wait_for_agent_speech(timeout=LOADED_S)
        await _replies_after(caller, greeting.start)
        for text in COMPLETE_LINES:
            spoken = await caller.say(text)
            replies = await _replies_after(caller, spoken.voice_ended)
            figures.lines += 1
            if replies:
                figures.ttfa_s.append(replies[0][0] - spoken.voice_ended)
            else:
                figures.unanswered += 1
            if verbose:
                print(f"  {text!r}: replies heard (ms after the line's end) {_shown(replies, spoken.voice_ended)}")
        for first, pause_s, second in PAUSE_LINES:
            samples = np.concatenate([synthesize(first), np.zeros(int(16000 * pause_s), dtype=np.int16),
                                      synthesize(second)])
            spoken = await caller.play(samples, text=f"{first} ... {second}")
            replies = await _replies_after(caller, spoken.voice_started, PAUSE_SETTLE_S)
            figures.lines += 1
            figures.pause_lines += 1
            if not replies:
                figures.unanswered += 1
            elif replies[0][0] < spoken.voice_ended + NOT_THAT_FAST_S or len(replies) > 1:
                figures.premature += 1
            if verbose:
                print(f"  {first!r} ({pause_s} s) {second!r}: replies heard (ms after the line's end)"
                      f" {_shown(replies, spoken.voice_ended)}")


async def run(args) -> dict[str, Any]:
    region, stop_livekit = livekit_region()
    names = args.settings.split(",")
    workers: dict[str, WorkerUnderTest] = {}
    figures = {name: Figures() for name in names}
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="turn-bench-"))
    try:
        for name in names:
            workers[name] = WorkerUnderTest.start(directory, demo_spec(SETTINGS[name]), livekit=region, wait_ready=0)
        for worker in workers.values():
            worker.wait_ready(180)
        print(f"{len(workers)} workers ready in {time.monotonic() - started:.0f} s", flush=True)
        for round_index in range(args.rounds):
            for name in names:
                await one_call(region, workers[name], figures[name], verbose=args.verbose)
                summary = figures[name].summary()
                print(f"round {round_index + 1} {name}: TTFA p50 {summary['ttfa_p50_ms']} ms, premature"
                      f" {summary['premature']}/{summary['pause_lines']}", flush=True)
    finally:
        for worker in workers.values():
            worker.stop()
        stop_livekit()
    results = {name: figures[name].summary() for name in names}
    base = results.get("today", {}).get("ttfa_p50_ms")
    load = os.getloadavg()
    print(f"\nturn taking, offline demo, {args.rounds} calls per setting, load average {load[0]:.1f}"
          f" (run {time.monotonic() - started:.0f} s)")
    print(f"{'setting':<22}{'TTFA p50':>10}{'p95':>8}{'n':>4}{'vs today':>10}{'premature':>11}{'unanswered':>12}")
    for name, result in results.items():
        ratio = round(result["ttfa_p50_ms"] / base, 2) if base and result["ttfa_p50_ms"] else None
        result["p50_vs_today"] = ratio
        print(f"{name:<22}{result['ttfa_p50_ms'] or 0:>8.0f}ms{result['ttfa_p95_ms'] or 0:>6.0f}ms"
              f"{result['ttfa_n']:>4}{ratio or 0:>10.2f}{result['premature']:>7}/{result['pause_lines']:<3}"
              f"{result['unanswered']:>10}")
    report = {"bench": "turn_taking", "rounds": args.rounds, "load_average": round(load[0], 1),
              "settings": {name: {"turnDetection": SETTINGS[name], **results[name]} for name in names}}
    print("BENCH_JSON " + json.dumps(report))
    return report


def livekit_region():
    """The running test world's us-east livekit-server when VOXFLEET_WORLD_DIR names one, else one of our own."""
    configured = os.environ.get("VOXFLEET_WORLD_DIR")
    if configured:
        from voxfleet.world.world import World, WorldInfo

        if World(Path(configured)).running():
            return WorldInfo.load(Path(configured)).livekit_regions()["us-east"], lambda: None
    from bench.worker_bench import start_livekit
    from voxfleet.world import processes

    region, servers = start_livekit(Path(tempfile.mkdtemp(prefix="turn-bench-lk-")))
    return region, lambda: processes.stop_groups([server.pid for server in servers])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="calls per setting (each: 5 complete lines, 6 with a pause)")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help=f"of: {', '.join(SETTINGS)}")
    parser.add_argument("--verbose", action="store_true", help="each line's replies as heard")
    args = parser.parse_args()
    unknown = set(args.settings.split(",")) - set(SETTINGS)
    if unknown:
        raise SystemExit(f"unknown settings: {', '.join(sorted(unknown))}")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
