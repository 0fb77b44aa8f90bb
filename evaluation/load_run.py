"""`voxfleet eval --load N --duration D`: N callers place the suite's scenarios back to back (each caller starts at
another scenario and goes round) for D seconds, as real calls through the gateway, each judged like any eval
call; calls under way at the end finish. Just before, the same scenarios run once each, one call at a time: the
baseline the loaded figures are read against in the same run.

A caller the gateway refuses (429 or 503: no free slot, a quota) waits as Retry-After says and asks again, as long
as the run lasts (at least MIN_PATIENCE_S); every refusal is counted, and the wait is the call's admission time.
Each caller has its own HTTP client, as separate callers would.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime, timezone
from typing import TextIO

from voxfleet.evaluation.eval_sessions import EvalSessions
from voxfleet.evaluation.expectations import judge
from voxfleet.evaluation.load_report import LoadCall, LoadReport, figures, over_time, ratio
from voxfleet.evaluation.scenario_call import run_scenario
from voxfleet.evaluation.scenario_models import Scenario
from voxfleet.evaluation.suite_loader import LoadedSuite

MAX_CALLERS = 100
MIN_PATIENCE_S = 5.0
PROGRESS_EVERY_S = 10.0


async def place(loaded: LoadedSuite, scenario: Scenario, sessions: EvalSessions, *, caller: int,
                run_started: float) -> LoadCall:
    """One call, judged; what the load report keeps of it."""
    asked, refusals_before = time.monotonic(), len(sessions.refusals)
    timeline = await run_scenario(loaded, scenario, sessions)
    result = await asyncio.to_thread(judge, timeline, loaded.suite.defaults)
    refusals = len(sessions.refusals) - refusals_before
    if timeline.grant is None:
        outcome = "refused" if refusals else "error"
    elif timeline.error:
        outcome = "error"
    else:
        outcome = "passed" if result.passed else "failed"
    return LoadCall(caller=caller, scenario=scenario.name, started_s=round(asked - run_started, 2),
                    admission_wait_s=round(timeline.granted - asked, 2) if timeline.grant else None,
                    duration_s=round(time.monotonic() - asked, 2), outcome=outcome, error=timeline.error,
                    ttfa_ms=[t.ttfa_ms for t in result.turns if t.ttfa_ms is not None],
                    unanswered_turns=sum(1 for t in result.turns if t.ttfa_ms is None) if timeline.grant else 0,
                    refusals=refusals)


class _Progress:
    def __init__(self, duration_s: float, stream: TextIO, enabled: bool):
        self.duration_s, self.stream, self.enabled = duration_s, stream, enabled
        self.calls: list[LoadCall] = []
        self.placing = 0

    def say(self, message: str) -> None:
        if self.enabled:
            print(f"[load] {message}", file=self.stream, flush=True)

    async def report_every(self, started: float) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            passed = sum(1 for c in self.calls if c.outcome == "passed")
            refusals = sum(c.refusals for c in self.calls)
            self.say(f"{min(time.monotonic() - started, self.duration_s):.0f}/{self.duration_s:.0f} s:"
                     f" {len(self.calls)} calls done ({passed} passed), {self.placing} under way,"
                     f" {refusals} refusals")


async def run_load(loaded: LoadedSuite, *, gateway: str, api_key: str, callers: int, duration_s: float,
                   only: list[str] | None = None, progress: bool = True, stream: TextIO = sys.stderr) -> LoadReport:
    scenarios = [s for s in loaded.suite.scenarios if not only or s.name in only]
    callers = max(1, min(callers, MAX_CALLERS))
    started_at = datetime.now(timezone.utc)
    status = _Progress(duration_s, stream, progress)

    status.say(f"single caller: {len(scenarios)} scenario(s), one call at a time")
    single_sessions = EvalSessions(gateway, api_key)
    single_started = time.monotonic()
    try:
        single_calls = [await place(loaded, s, single_sessions, caller=0, run_started=single_started)
                        for s in scenarios]
    finally:
        await single_sessions.aclose()
    single = figures(single_calls, time.monotonic() - single_started)
    status.say(f"single caller: {single.passed}/{single.calls} passed, TTFA p95 {single.ttfa_p95_ms} ms")

    status.say(f"{callers} callers for {duration_s:.0f} s")
    started = time.monotonic()
    deadline = started + duration_s

    async def caller_loop(index: int) -> list[LoadCall]:
        sessions = EvalSessions(gateway, api_key)
        placed: list[LoadCall] = []
        next_scenario = index
        try:
            while time.monotonic() < deadline:
                sessions.start_patience_s = max(MIN_PATIENCE_S, deadline - time.monotonic())
                status.placing += 1
                try:
                    call = await place(loaded, scenarios[next_scenario % len(scenarios)], sessions, caller=index,
                                       run_started=started)
                finally:
                    status.placing -= 1
                placed.append(call)
                status.calls.append(call)
                next_scenario += 1
        finally:
            await sessions.aclose()
        return placed

    reporter = asyncio.create_task(status.report_every(started))
    try:
        per_caller = await asyncio.gather(*(caller_loop(i) for i in range(callers)))
    finally:
        reporter.cancel()
    ran_s = time.monotonic() - started
    calls = sorted((c for placed in per_caller for c in placed), key=lambda c: c.started_s)
    loaded_figures = figures(calls, ran_s)
    return LoadReport(suite=str(loaded.path), agent=loaded.suite.agent, gateway=gateway, started_at=started_at,
                      callers=callers, duration_s=duration_s, ran_s=round(ran_s, 2), single=single,
                      loaded=loaded_figures, ttfa_p95_vs_single=ratio(loaded_figures.ttfa_p95_ms, single.ttfa_p95_ms),
                      over_time=over_time(calls, duration_s), single_calls=single_calls, calls=calls)
