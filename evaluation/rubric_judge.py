"""A scenario's rubric: an LLM reads the call's transcript (what the caller said, what the agent said as judging
heard it, the tools it called) and the criteria, and answers pass or fail with a one-sentence reason, which the
report keeps as the `rubric` expectation. The rules have already judged the call; the rubric adds what rules
cannot say ("polite", "never promised a date").

The judge sees text only, never audio. Its key comes from llm_keys; endpoint failures are reported by type and
status only (some providers echo part of the key), and an answer that is not a verdict fails the expectation
with what the judge said, so a confused judge is visible rather than a silent pass.
"""

from __future__ import annotations

import json
import re

from voxfleet.evaluation.report_models import ExpectationResult, ScenarioResult
from voxfleet.evaluation.scenario_models import Rubric

TIMEOUT_S = 30.0
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
    from openai import APIError, APIStatusError, AsyncOpenAI  # the eval extra's, only for suites with a rubric

    client = AsyncOpenAI(base_url=rubric.judge.base_url, api_key=api_key, timeout=TIMEOUT_S, max_retries=1)
    try:
        response = await client.chat.completions.create(
            model=rubric.judge.model, messages=judge_messages(rubric, result),
            temperature=rubric.judge.temperature, max_tokens=MAX_VERDICT_TOKENS)
    except APIStatusError as error:
        return _expectation(rubric, False, "no verdict", f"the judge's LLM answered HTTP {error.status_code}"
                                                         f" ({type(error).__name__})")
    except APIError as error:
        return _expectation(rubric, False, "no verdict", f"the judge's LLM failed: {type(error).__name__}")
    finally:
        await client.close()
    text = response.choices[0].message.content if response.choices else ""
    verdict = parse_verdict(text or "")
    if verdict is None:
        said = " ".join((text or "").split())[:200]
        return _expectation(rubric, False, "no verdict", f"the judge's answer was not a verdict: {said!r}")
    passed, reason = verdict
    return _expectation(rubric, passed, reason, f"the judge {'passed' if passed else 'failed'} the call: {reason}")
