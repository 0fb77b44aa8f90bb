"""An LLM plays the simulated caller, through any OpenAI-compatible Chat Completions endpoint.

The model gets the persona, the goal and the conversation so far (the agent's lines as the user's, the
caller's own as the assistant's) and answers with the caller's next line, or DONE when it believes the goal is
reached or the call can go no further. Whether the goal was really reached is judged by the scenario's rules,
not by the model.

The API key comes from the environment variable or file the scenario names (llm_keys); it is never logged, and
errors are reported by type and status only, since some providers echo part of the key in their messages.
"""

from __future__ import annotations

import re

from voxfleet.evaluation.caller_script import CallerLine, Exchange
from voxfleet.evaluation.scenario_models import MAX_LINE_CHARS, OpenAIBrain, SimulatedCaller

MAX_REPLY_TOKENS = 150
TIMEOUT_S = 30.0
DONE = "DONE"
_DONE_AT_END = re.compile(r"\bDONE\W*$")


class CallerLLMError(RuntimeError):
    """The endpoint failed to give a line; the message carries no secret."""


def system_prompt(caller: SimulatedCaller) -> str:
    return (
        "You are role-playing a person phoning a voice agent, to test it. Stay in character.\n"
        f"Who you are: {caller.persona}\n"
        f"What you want from this call: {caller.goal.description}\n"
        "Answer with only your next spoken line: one or two short sentences, plain words, no stage directions."
        f" When your goal is reached, or the call cannot go any further, answer with just {DONE}.")


def chat_messages(caller: SimulatedCaller, conversation: list[Exchange]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt(caller)}]
    if not conversation or conversation[0].role != "agent":
        messages.append({"role": "user", "content": "(The call has connected; the agent has said nothing yet.)"})
    for exchange in conversation:
        messages.append({"role": "user" if exchange.role == "agent" else "assistant",
                         "content": exchange.text or "(silence)"})
    return messages


def parse_reply(text: str) -> CallerLine | None:
    """The model's answer as a caller line: DONE alone hangs up; a line ending in DONE is said, then the caller
    hangs up once it is answered."""
    text = " ".join((text or "").split())
    if not text or text.strip(" .!").upper() == DONE:
        return None
    if _DONE_AT_END.search(text):
        line = _DONE_AT_END.sub("", text).strip()
        return CallerLine(line[:MAX_LINE_CHARS], hang_up_after=True, because="the LLM said its goal is reached") \
            if line else None
    return CallerLine(text[:MAX_LINE_CHARS], because="the LLM's next line")


class LLMCaller:
    def __init__(self, caller: SimulatedCaller, api_key: str):
        from openai import AsyncOpenAI  # the eval extra's; imported here so scripted suites never need it

        assert isinstance(caller.brain, OpenAIBrain)
        self._caller, self._brain = caller, caller.brain
        self._client = AsyncOpenAI(base_url=self._brain.base_url, api_key=api_key, timeout=TIMEOUT_S,
                                   max_retries=1)

    async def next_line(self, conversation: list[Exchange]) -> CallerLine | None:
        from openai import APIError, APIStatusError

        try:
            response = await self._client.chat.completions.create(
                model=self._brain.model, messages=chat_messages(self._caller, conversation),
                temperature=self._brain.temperature, max_tokens=MAX_REPLY_TOKENS)
        except APIStatusError as error:
            raise CallerLLMError(f"the caller's LLM answered HTTP {error.status_code}"
                                 f" ({type(error).__name__})") from None
        except APIError as error:
            raise CallerLLMError(f"the caller's LLM failed: {type(error).__name__}") from None
        choice = response.choices[0] if response.choices else None
        return parse_reply(choice.message.content if choice is not None else "")

    async def closing_line(self) -> str | None:
        return None  # the model already said goodbye if it wanted to; the rules ended the call

    async def aclose(self) -> None:
        await self._client.close()
