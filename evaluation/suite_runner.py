"""Running a suite: its scenarios as concurrent real calls (at most ``concurrency`` at once), each judged as
soon as its call has ended (in a thread: local speech recognition, the slow fallback for agents without
transcripts, must not stall the event loop the live callers run on). A failed scenario is placed again up to
``retries`` times; its report keeps the failed attempts and marks it flaky if a later attempt passed. A
scenario with a rubric is then judged by its LLM too (rubric_judge).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path

from voxfleet.evaluation.call_recording import write_recording
from voxfleet.evaluation.eval_sessions import EvalSessions
from voxfleet.evaluation.expectations import judge
from voxfleet.evaluation.report_models import RunReport, ScenarioResult, summarise
from voxfleet.evaluation.rubric_judge import judge_scenario
from voxfleet.evaluation.scenario_call import CallTimeline, TurnTimeline, run_scenario
from voxfleet.evaluation.scenario_models import Scenario
from voxfleet.evaluation.suite_loader import LoadedSuite
from voxfleet.evaluation.terminal_output import ProgressBar

DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 100


def planned_turns(scenario: Scenario) -> int:
    """Turns the scenario may take: its fixed turns and, at most, its simulated caller's lines and closing line."""
    return len(scenario.turns) + (scenario.caller.max_turns + 1 if scenario.caller is not None else 0)


async def run_suite(loaded: LoadedSuite, *, gateway: str, api_key: str, concurrency: int = DEFAULT_CONCURRENCY,
                    only: list[str] | None = None, retries: int = 0,
                    progress: ProgressBar | None = None, save_audio: Path | None = None) -> RunReport:
    """`save_audio`: a folder for each scenario's recording (call_recording.py; a retried one keeps its last)."""
    scenarios = [s for s in loaded.suite.scenarios if not only or s.name in only]
    progress = progress or ProgressBar(len(scenarios), sum(planned_turns(s) for s in scenarios), enabled=False)
    started_at, started = datetime.now(timezone.utc), time.monotonic()
    concurrency = max(1, min(concurrency, MAX_CONCURRENCY))
    gate = asyncio.Semaphore(concurrency)
    sessions = EvalSessions(gateway, api_key)

    def on_turn(_timeline: CallTimeline, turn: TurnTimeline) -> None:
        progress.turn_done(turn.reply_start is not None)

    async def attempt(scenario) -> ScenarioResult:
        async with gate:
            progress.scenario_started()
            timeline = await run_scenario(loaded, scenario, sessions, on_turn=on_turn)
        if save_audio is not None:
            await asyncio.to_thread(write_recording, timeline, save_audio, scenario.name)
        result = await asyncio.to_thread(judge, timeline, loaded.suite.defaults)
        if scenario.rubric is not None:
            result.rubric = await judge_scenario(scenario.rubric, result, loaded.path.parent)
            result.passed = result.passed and result.rubric.passed
        failed = sum(1 for _, e in result.expectations() if not e.passed)
        progress.scenario_done(scenario.name, timeline.error or ("passed" if result.passed else f"{failed} failed"))
        return result

    async def one(scenario) -> ScenarioResult:
        earlier: list[ScenarioResult] = []
        result = await attempt(scenario)
        while not result.passed and len(earlier) < retries:
            earlier.append(result)
            progress.retrying(planned_turns(scenario))
            result = await attempt(scenario)
        result.earlier_attempts = [r.as_earlier_attempt() for r in earlier]
        result.flaky = result.passed and bool(earlier)
        return result

    try:
        results = list(await asyncio.gather(*(one(s) for s in scenarios)))
    finally:
        await sessions.aclose()
        progress.close()
    return RunReport(suite=str(loaded.path), agent=loaded.suite.agent, gateway=gateway, started_at=started_at,
                     duration_s=round(time.monotonic() - started, 2), concurrency=concurrency, retries=retries,
                     summary=summarise(results), scenarios=results)
