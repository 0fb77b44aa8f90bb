"""A scenario's rubric: an LLM reads the call's transcript (what the caller said, what the agent said as judging
heard it, the tools it called) and the criteria, and answers pass or fail with a one-sentence reason, which the
report keeps as the `rubric` expectation. The rules have already judged the call; the rubric adds what rules
cannot say ("polite", "never promised a date").

The judge sees text only, never audio. Its key comes from llm_keys and its endpoint is llm_endpoint's (failures
by type and status only); an answer that is not a verdict fails the expectation with what the judge said, so a
confused judge is visible rather than a silent pass.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from voxfleet.evaluation.llm_endpoint import LLMEndpoint, LLMEndpointError
from voxfleet.evaluation.llm_keys import LLMKeyError, read_api_key
from voxfleet.evaluation.report_models import ExpectationResult, ScenarioResult
from voxfleet.evaluation.scenario_models import Rubric
MAX_VERDICT_TOKENS = 200
MAX_TRANSCRIPT_CHARS = 20000  # the last part of a very long call: the judge's context and cost stay bounded
MAX_REASON_CHARS = 500
SYSTEM_PROMPT = (
    "You judge a recorded phone call between a caller and a voice agent against the criteria you are given."
    " Judge only what the transcript shows. Answer with only a JSON object:"
    ' {"pass": true or false, "reason": "one sentence naming what decided it"}.')
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def call_transcript(result: ScenarioResult) -> str:
    lines = [f"agent: {result.greeting}"] if result.greeting else []
    for turn in result.turns:
        lines.append(f"caller: {turn.said}")
        lines += [f"(the agent called the tool {call.name} with {json.dumps(call.arguments, sort_keys=True)})"
                  for call in turn.tool_calls]
        lines.append(f"agent: {turn.agent_text or '(said nothing)'}")
    return "\n".join(lines)[-MAX_TRANSCRIPT_CHARS:]


def judge_messages(rubric: Rubric, result: ScenarioResult) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Criteria:\n{rubric.criteria}\n\nTranscript:\n{call_transcript(result)}"}]


def parse_verdict(text: str) -> tuple[bool, str] | None:
    """(passed, reason) from the judge's answer, or None when it is not a verdict."""
    found = _OBJECT.search(text or "")
    if found is None:
        return None
    try:
        verdict = json.loads(found.group(0))
    except ValueError:
        return None
    if not isinstance(verdict, dict) or not isinstance(verdict.get("pass"), bool):
        return None
    reason = " ".join(str(verdict.get("reason") or "(no reason given)").split())[:MAX_REASON_CHARS]
    return verdict["pass"], reason


def _expectation(rubric: Rubric, passed: bool, actual: str, message: str) -> ExpectationResult:
    return ExpectationResult(kind="rubric", passed=passed, expected=" ".join(rubric.criteria.split())[:300],
                             actual=actual, message=message)


async def judge_by_rubric(rubric: Rubric, result: ScenarioResult, api_key: str) -> ExpectationResult:
    if result.error is not None and not result.turns:
        return _expectation(rubric, False, "no verdict", "the judge was not asked: the call did not take place")
    judge = LLMEndpoint(rubric.judge, api_key, who="judge")
    try:
        text = await judge.reply(judge_messages(rubric, result), max_tokens=MAX_VERDICT_TOKENS)
    except LLMEndpointError as error:
        return _expectation(rubric, False, "no verdict", str(error))
    finally:
        await judge.aclose()
    verdict = parse_verdict(text)
    if verdict is None:
        said = " ".join(text.split())[:200]
        return _expectation(rubric, False, "no verdict", f"the judge's answer was not a verdict: {said!r}")
    passed, reason = verdict
    return _expectation(rubric, passed, reason, f"the judge {'passed' if passed else 'failed'} the call: {reason}")


async def judge_scenario(rubric: Rubric, result: ScenarioResult, suite_dir: Path) -> ExpectationResult:
    """The rubric's verdict on a judged call, its key read now (checked before the run; a key file may be gone)."""
    try:
        key = read_api_key(rubric.judge, suite_dir, "rubric.judge")
    except LLMKeyError as error:
        return _expectation(rubric, False, "no verdict", str(error))
    return await judge_by_rubric(rubric, result, key)
