"""Eval benchmark: replaying scripted calls through the platform the way `voxfleet eval` does, at growing
concurrency, each level against the one-call-at-a-time baseline measured in the same run.

Per level (calls placed through a real gateway into livekit-server rooms, answered by real offline workers):
- caller-heard TTFA p50/p95 (end of the caller's speech -> first agent audio, as recorded in the room);
- worker-measured TTFA p50/p95 (the figures the TTFA histogram records, returned per answer by eval mode) and
  the median gap between the two (network legs, plus any backlog of a worker short of CPU);
- turn success rate, and whether the report agrees with the workers' histograms (count and mean);
- the runner's own cost: CPU seconds of the `voxfleet eval` process per call-second.
Plus the transport floor: two one-way legs through the same livekit-server.

Everything shares this machine (on a shared box, other people's work too). Prints the figures and one JSON line
(prefix `BENCH_JSON `).

    .venv/bin/python bench/eval_bench.py [--levels 1,5,10] [--calls 10] [--workers 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.callers.caller_bot import measure_two_legs  # noqa: E402
from tests.crds import install_crds  # noqa: E402
from tests.eval.eval_platform import REGION, EvalPlatform, offline_demo_spec, read_report, write_suite  # noqa: E402
from voxfleet.evaluation.report_models import percentile  # noqa: E402
from voxfleet.world.access import Cluster, RunnerPool  # noqa: E402
from voxfleet.world.world import attach_or_start  # noqa: E402

AGENT = "bench"
HISTOGRAM = "voxfleet_worker_ttfa_seconds"


def _spec(platform: EvalPlatform, per_worker: int) -> dict:
    intents = [i for i in offline_demo_spec("http://x.example")["intents"] if i["name"] in ("hours", "goodbye")]
    return offline_demo_spec(platform.tool.url, greeting="Hello, how can I help?", tools=[], intents=intents,
                             scaling={"sessionsPerWorker": per_worker, "bufferSessions": 0})


def _suite(calls: int) -> dict:
    return {"agent": AGENT, "defaults": {"answerTimeoutMs": 30000},
            "scenarios": [{"name": f"call-{n}", "turns": [
                {"say": "opening hours", "expect": {"mentions": ["nine in the morning"]}},
                {"say": "thank you goodbye", "expect": {"mentions": ["goodbye"]}}]} for n in range(calls)]}


def _histogram(platform: EvalPlatform) -> tuple[float, float]:
    return (platform.worker_metric(AGENT, f"{HISTOGRAM}_sum"), platform.worker_metric(AGENT, f"{HISTOGRAM}_count"))


def _level(platform: EvalPlatform, work: Path, calls: int, concurrency: int) -> dict:
    suite = write_suite(work / f"suite-{concurrency}.yaml", _suite(calls))
    report_path = work / f"report-{concurrency}.json"
    before, cpu_before = _histogram(platform), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = platform.eval(suite, "--report", str(report_path), "--concurrency", str(concurrency), "--no-progress")
    after, cpu_after = _histogram(platform), resource.getrusage(resource.RUSAGE_CHILDREN)
    report = read_report(report_path)
    s = report["summary"]
    call_seconds = sum(x["durationS"] for x in report["scenarios"])
    timed = after[1] - before[1]
    histogram_mean = (after[0] - before[0]) / timed * 1000 if timed else None
    runner_cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return {"concurrency": concurrency, "calls": calls, "exit": result.returncode,
            "heardP50Ms": s["ttfaP50Ms"], "heardP95Ms": s["ttfaP95Ms"], "agentP50Ms": s["agentTtfaP50Ms"],
            "agentP95Ms": s["agentTtfaP95Ms"], "heardMinusAgentP50Ms": s["transportP50Ms"],
            "turnSuccessRate": s["turnSuccessRate"], "answered": s["ttfaCount"], "turns": s["turns"],
            "reportMatchesHistogram": bool(timed) and s["agentTtfaCount"] == timed
            and abs((s["agentTtfaMeanMs"] or 0) - histogram_mean) <= 50,
            "runnerCpuPerCallSecond": round(runner_cpu / call_seconds, 4) if call_seconds else None,
            "wallSeconds": report["durationS"]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,5,10", help="concurrency levels; the first is the baseline")
    parser.add_argument("--calls", type=int, default=10, help="scenario calls per level (2 turns each)")
    parser.add_argument("--workers", type=int, default=3, help="worker pods for the agent")
    parser.add_argument("--per-worker", type=int, default=4, help="sessionsPerWorker")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]

    work = Path(tempfile.mkdtemp(prefix="voxfleet-eval-bench-"))
    info, world = attach_or_start(work, progress=lambda m: print(f"[world] {m}", file=sys.stderr, flush=True))
    platform = None
    try:
        kube = Cluster.of(info)
        install_crds(kube)
        platform = EvalPlatform.start(kube, RunnerPool.of(info), info.livekit_regions(), work)
        platform.deploy(AGENT, _spec(platform, args.per_worker), workers=args.workers, timeout=240)
        trips = asyncio.run(measure_two_legs(info.livekit_regions()[REGION]))
        results = []
        for concurrency in levels:
            started = time.monotonic()
            results.append(_level(platform, work, args.calls, concurrency))
            print(f"[bench] concurrency {concurrency}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    finally:
        if platform is not None:
            platform.stop()
        if world is not None:
            world.stop()

    base = results[0]
    print(f"transport: two one-way legs p50 {statistics.median(trips) * 1000:.0f} ms,"
          f" p95 {percentile(trips, 95) * 1000:.0f} ms (n={len(trips)})")
    print(f"{'calls at once':>13}  {'heard p50/p95 ms':>16}  {'worker p50/p95 ms':>17}  {'gap ms':>6}  {'turns ok':>8}"
          f"  {'vs baseline p95':>15}  {'report=histogram':>16}  {'runner CPU':>10}")
    for r in results:
        growth = (f"{(r['heardP95Ms'] / base['heardP95Ms'] - 1) * 100:+.0f}%" if r["heardP95Ms"] and
                  base["heardP95Ms"] else "-")
        print(f"{r['concurrency']:>13}  {_pair(r['heardP50Ms'], r['heardP95Ms']):>16}"
              f"  {_pair(r['agentP50Ms'], r['agentP95Ms']):>17}  {_ms(r['heardMinusAgentP50Ms']):>6}"
              f"  {r['turnSuccessRate']:>8.0%}  {growth:>15}  {str(r['reportMatchesHistogram']):>16}"
              f"  {_share(r['runnerCpuPerCallSecond']):>10}")
    figures = {"bench": "eval", "transportTwoLegsP50Ms": round(statistics.median(trips) * 1000, 1),
               "levels": results, "machineLoad1m": os.getloadavg()[0]}
    print("BENCH_JSON " + json.dumps(figures))
    return 0


def _pair(p50, p95) -> str:
    return f"{_ms(p50)}/{_ms(p95)}"


def _ms(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def _share(value) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
