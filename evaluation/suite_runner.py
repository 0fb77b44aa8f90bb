"""Running a suite: its scenarios as concurrent real calls (at most ``concurrency`` at once), then judging
them all into a RunReport. Judging waits until every call has ended, so local speech recognition (the slow
fallback for agents without transcripts) never competes with live calls for CPU and skews their timing.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

from voxfleet.evaluation.eval_sessions import EvalSessions
from voxfleet.evaluation.expectations import judge
from voxfleet.evaluation.report_models import RunReport, summarise
from voxfleet.evaluation.scenario_call import CallTimeline, TurnTimeline, run_scenario
from voxfleet.evaluation.suite_loader import LoadedSuite
from voxfleet.evaluation.terminal_output import ProgressBar

DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 100


async def run_suite(loaded: LoadedSuite, *, gateway: str, api_key: str, concurrency: int = DEFAULT_CONCURRENCY,
                    only: list[str] | None = None, progress: ProgressBar | None = None) -> RunReport:
    scenarios = [s for s in loaded.suite.scenarios if not only or s.name in only]
    progress = progress or ProgressBar(len(scenarios), sum(len(s.turns) for s in scenarios), enabled=False)
    started_at, started = datetime.now(timezone.utc), time.monotonic()
    concurrency = max(1, min(concurrency, MAX_CONCURRENCY))
    gate = asyncio.Semaphore(concurrency)
    sessions = EvalSessions(gateway, api_key)

    def on_turn(_timeline: CallTimeline, turn: TurnTimeline) -> None:
        progress.turn_done(turn.reply_start is not None)

    async def one(scenario) -> CallTimeline:
        async with gate:
            progress.scenario_started()
            timeline = await run_scenario(loaded, scenario, sessions, on_turn=on_turn)
            answered = sum(1 for t in timeline.turns if t.reply_start is not None)
            progress.scenario_done(scenario.name, timeline.error or f"{answered}/{len(scenario.turns)} turns answered")
            return timeline

    try:
        timelines = await asyncio.gather(*(one(s) for s in scenarios))
    finally:
        await sessions.aclose()
        progress.close()
    results = await asyncio.to_thread(lambda: [judge(t, loaded.suite.defaults) for t in timelines])
    return RunReport(suite=str(loaded.path), agent=loaded.suite.agent, gateway=gateway, started_at=started_at,
                     duration_s=round(time.monotonic() - started, 2), concurrency=concurrency,
                     summary=summarise(results), scenarios=results)
