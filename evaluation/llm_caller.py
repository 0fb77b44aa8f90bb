"""An LLM plays the simulated caller, through any OpenAI-compatible Chat Completions endpoint.

The model gets the persona, the goal and the conversation so far (the agent's lines as the user's, the
caller's own as the assistant's) and answers with the caller's next line, or DONE when it believes the goal is
reached or the call can go no further. Whether the goal was really reached is judged by the scenario's rules,
not by the model.

The API key comes from the environment variable or file the scenario names (llm_keys); the endpoint and its
secret-free errors are llm_endpoint's.
"""

from __future__ import annotations

import re

from voxfleet.evaluation.caller_script import CallerLine, Exchange
from voxfleet.evaluation.llm_endpoint import LLMEndpoint
from voxfleet.evaluation.scenario_models import MAX_LINE_CHARS, OpenAIBrain, SimulatedCaller

MAX_REPLY_TOKENS = 150
DONE = "DONE"
_DONE_AT_END = re.compile(r"\bDONE\W*$")


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
        assert isinstance(caller.brain, OpenAIBrain)
        self._caller = caller
        self._endpoint = LLMEndpoint(caller.brain, api_key, who="caller")

    async def next_line(self, conversation: list[Exchange]) -> CallerLine | None:
        """Raises LLMEndpointError when the endpoint gives no line."""
        return parse_reply(await self._endpoint.reply(chat_messages(self._caller, conversation),
                                                      max_tokens=MAX_REPLY_TOKENS))

    async def closing_line(self) -> str | None:
        return None  # the model already said goodbye if it wanted to; the rules ended the call

    async def aclose(self) -> None:
        await self._endpoint.aclose()
