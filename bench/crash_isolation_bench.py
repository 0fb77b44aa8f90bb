"""Crash isolation benchmark: what one native crash in a worker takes down, and what a process per session group
would cost instead.

Every session of a worker shares its process (worker/README.md: one event loop, chosen for density), so a native
fault in one call (a segfault in ONNX runtime or LiveKit's FFI) ends them all. Measured with real parts, in one
run, on a private livekit-server:

1. memory: a warm, idle worker's RSS, PSS and private (USS) memory; a second worker of the same agent started
   beside it, warm and idle (what each extra process of a process-per-session-group design would hold: its own
   interpreter, Pipecat, ONNX sessions and LiveKit FFI runtime); the first worker again with 1 and with
   sessionsPerWorker live calls (RSS per session).
2. the crash: SIGSEGV to the worker serving `sessions` live calls, each with a caller in its room, while the
   second worker serves one call of its own. Calls lost = callers who get no answer to a question asked after it;
   the neighbour's caller must still get its answer (a pod is the isolation boundary today).
3. the alternative, computed from (1): for session groups of g calls per process, the memory per worker
   (private memory is what the container's cgroup pays per extra process; shared library pages are counted
   once) and the calls one crash takes.

Prints the figures and one JSON line (prefix `BENCH_JSON `).

    .venv/bin/python bench/crash_isolation_bench.py [--sessions 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worker_bench import start_livekit  # noqa: E402 - a sibling script (bench/ is on sys.path)
from tests.callers.caller_bot import CallerBot, mint_token  # noqa: E402
from tests.worker.worker_harness import WorkerUnderTest, offline_spec  # noqa: E402

ANSWER_TIMEOUT_S = 15.0
READY_TIMEOUT_S = 180.0  # a warm start on a busy shared 2-core box


def memory_mib(pid: int) -> dict[str, float]:
    """RSS, PSS (shared pages split among the processes mapping them) and USS (private pages) in MiB."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[name] = int(parts[0])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"rss": round(fields.get("Rss", 0) / 1024, 1), "pss": round(fields.get("Pss", 0) / 1024, 1),
            "uss": round(uss / 1024, 1)}


def caller_for(region, room: str) -> CallerBot:
    return CallerBot(region.url, mint_token(region, room=room, identity=f"caller-{uuid.uuid4().hex[:6]}"))


async def settle(seconds: float = 1.5) -> None:
    await asyncio.sleep(seconds)  # lets a warm start's or a join's last allocations land before a reading


async def still_answers(caller: CallerBot) -> bool:
    """Whether the agent still answers a question (any speech after it). A crashed agent's participant stays in
    the room until livekit-server's departure timeout (~20 s), so only an answer tells a live call; the timeout
    allows for a loaded machine (the other worker's call is the control)."""
    spoken = await caller.say("opening hours")
    try:
        await caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=ANSWER_TIMEOUT_S)
    except TimeoutError:
        return False
    return True


async def run(args) -> dict:
    state = Path(tempfile.mkdtemp(prefix="voxfleet-crash-bench-"))
    region, servers = start_livekit(state)
    spec = offline_spec(scaling={"sessionsPerWorker": args.sessions},
                        limits={"maxSessionSeconds": 600, "idleTimeoutSeconds": 300})
    workers: list[WorkerUnderTest] = []
    try:
        # A process of a session group holds what any warm worker holds, but only its own sessions' per-slot
        # engines (one PocketSphinx decoder a slot): measured as a warm idle worker with that many slots.
        process_of_group: dict[int, dict[str, float]] = {}
        for group in groups(args.sessions):
            if group == args.sessions:
                continue
            print(f"memory: a warm idle worker of {group} slot(s)...", flush=True)
            small = WorkerUnderTest.start(state, {**spec, "scaling": {"sessionsPerWorker": group}}, livekit=region,
                                          wait_ready=READY_TIMEOUT_S)
            workers.append(small)
            await settle()
            process_of_group[group] = memory_mib(small.process.pid)
            small.stop()
            print(f"  {process_of_group[group]}")
        print("memory: one warm idle worker, then a second beside it...", flush=True)
        crashing = WorkerUnderTest.start(state, spec, livekit=region, wait_ready=READY_TIMEOUT_S)
        workers.append(crashing)
        await settle()
        alone = memory_mib(crashing.process.pid)
        neighbour = WorkerUnderTest.start(state, spec, livekit=region, wait_ready=READY_TIMEOUT_S)
        workers.append(neighbour)
        await settle()
        idle = memory_mib(crashing.process.pid)
        second = memory_mib(neighbour.process.pid)
        print(f"  first worker idle {alone}; with a second worker running: first {idle}, second {second}")

        rooms = [f"crash-{i}-{uuid.uuid4().hex[:6]}" for i in range(args.sessions)]
        control_room = f"control-{uuid.uuid4().hex[:6]}"
        callers = [caller_for(region, room) for room in rooms]
        control = caller_for(region, control_room)
        by_level: dict[int, dict[str, float]] = {}
        for index, (room, caller) in enumerate(zip(rooms, callers)):
            assert crashing.dispatch(room=room).status_code == 201
            await caller.__aenter__()
            await caller.wait_for_agent_speech(timeout=30)
            await settle(0.5)
            by_level[index + 1] = memory_mib(crashing.process.pid)
        assert neighbour.dispatch(room=control_room).status_code == 201
        await control.__aenter__()
        await control.wait_for_agent_speech(timeout=30)
        await settle()
        full = memory_mib(crashing.process.pid)
        by_level[args.sessions] = full
        print(f"  with live calls: {by_level}", flush=True)

        print(f"the crash: SIGSEGV to the worker serving {args.sessions} calls...", flush=True)
        crashed_at = time.monotonic()
        os.kill(crashing.process.pid, signal.SIGSEGV)
        exit_code = crashing.process.wait(10)
        answered = await asyncio.gather(*(still_answers(caller) for caller in (*callers, control)))
        lost = sum(1 for ok in answered[:-1] if not ok)
        neighbour_answers = answered[-1]
        neighbour_active = neighbour.get("/v1/load").json()["active"]
        print(f"  exit code {exit_code} {time.monotonic() - crashed_at:.1f} s ago; calls lost {lost}/{args.sessions}"
              f" (no answer to a question after the crash); the other worker's call"
              f" {'still answered' if neighbour_answers else 'NOT answered'} ({neighbour_active} active)")
        for caller in (*callers, control):
            await caller.__aexit__(None, None, None)
    finally:
        for worker in workers:
            worker.stop()
        from voxfleet.world import processes

        for server in servers:
            processes.stop_group(server.pid)

    per_session_rss = round((full["rss"] - idle["rss"]) / args.sessions, 1)
    # A process's first call costs more than the next ones (joining LiveKit starts its FFI runtime, first use of
    # the pipeline's code paths): each process of a group design pays that first call again.
    first_call = by_level[1]["rss"] - idle["rss"]
    next_call = (full["rss"] - by_level[1]["rss"]) / max(1, args.sessions - 1)
    shared = idle["rss"] - idle["uss"]  # library pages every process maps: the container's cgroup pays them once
    # A process per group of g sessions: sessions/g processes per worker, each holding privately what a warm
    # worker of g slots holds (its USS: interpreter heap, Pipecat, ONNX sessions and arenas, g decoders).
    alternatives = []
    for group in groups(args.sessions):
        processes_per_worker = args.sessions // group
        private = process_of_group.get(group, idle)["uss"]
        memory = (shared + processes_per_worker * (private + first_call)
                  + (args.sessions - processes_per_worker) * next_call)
        alternatives.append({"sessions_per_process": group, "processes_per_worker": processes_per_worker,
                             "calls_lost_per_crash": group, "worker_memory_mib": round(memory, 1),
                             "memory_vs_one_process": round(memory / full["rss"], 2)})
    for row in alternatives:
        print(f"  groups of {row['sessions_per_process']}: {row['processes_per_worker']} processes,"
              f" {row['worker_memory_mib']} MiB per worker (x{row['memory_vs_one_process']}),"
              f" {row['calls_lost_per_crash']} calls lost per crash")
    return {
        "bench": "crash_isolation",
        "sessions_per_worker": args.sessions,
        "idle_worker_mib": idle, "idle_process_of_group_mib": {str(k): v for k, v in process_of_group.items()}, "idle_worker_alone_mib": alone, "second_process_idle_mib": second,
        "worker_with_calls_mib": {str(k): v for k, v in by_level.items()},
        "rss_per_session_mib": per_session_rss, "rss_first_call_mib": round(first_call, 1),
        "rss_next_call_mib": round(next_call, 1), "shared_library_mib": round(shared, 1),
        "crash": {"signal": "SIGSEGV", "exit_code": exit_code, "calls_lost": lost, "calls_live": args.sessions,
                  "other_worker_call_answered": neighbour_answers},
        "process_per_session_group": alternatives,
    }


def groups(sessions: int) -> list[int]:
    """Session-group sizes worth comparing: one call a process, two, and the whole worker (today's design)."""
    return sorted({g for g in (1, 2, sessions) if sessions % g == 0})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4, help="live calls on the crashing worker (its slots)")
    result = asyncio.run(run(parser.parse_args()))
    print("BENCH_JSON " + json.dumps(result))


if __name__ == "__main__":
    main()
