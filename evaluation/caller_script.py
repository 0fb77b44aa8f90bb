"""The offline simulated caller: a persona script whose next line branches on what the agent just said.

    brain:
      kind: scripted
      opening: where is my order
      rules:
        - whenAgentSays: [details, order number]
          say: where is my order one two three four
      fallback: sorry, my order please
      hangUp: thank you goodbye

A rule (or the opening, `openingInterrupt`) may `interrupt` the agent's answer to its line: `{say, atMs}` is spoken
that far into the answer, and the agent must stop within `stopWithinMs` (a barge-in, judged as in fixed turns).

Rules are plain words and phrases matched as whole words (agent_speech.mentions: digits as spoken or written
match each other), never user patterns, so matching is linear in what the agent said whatever the file holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from voxfleet.evaluation.agent_speech import mentions
from voxfleet.evaluation.scenario_models import Interruption, ScriptedBrain


@dataclass(frozen=True)
class Exchange:
    """One line of the conversation as the simulated caller knows it: what it said, or what it heard."""

    role: Literal["caller", "agent"]
    text: str


@dataclass(frozen=True)
class CallerLine:
    text: str
    hang_up_after: bool = False  # leave once the agent has answered this line
    because: str = ""  # why the caller said it (the rule that matched), for the report
    interrupt: Interruption | None = None  # cut in on the agent's answer to this line


class ScriptedCaller:
    def __init__(self, brain: ScriptedBrain):
        self._brain = brain

    async def next_line(self, conversation: list[Exchange]) -> CallerLine | None:
        """The caller's next line, or None to hang up (no rule matched and there is no fallback)."""
        if not any(exchange.role == "caller" for exchange in conversation):
            return CallerLine(self._brain.opening, because="opening line", interrupt=self._brain.opening_interrupt)
        heard = conversation[-1].text if conversation and conversation[-1].role == "agent" else ""
        for number, rule in enumerate(self._brain.rules, start=1):
            matched = next((phrase for phrase in rule.when_agent_says if mentions(heard, phrase)), None)
            if matched is not None:
                return CallerLine(rule.say, hang_up_after=rule.hang_up, interrupt=rule.interrupt,
                                  because=f"rule {number}: the agent said {matched!r}")
        if self._brain.fallback is not None:
            return CallerLine(self._brain.fallback, because="fallback: no rule matched")
        return None

    async def closing_line(self) -> str | None:
        """What the caller says once its goal is reached, before it hangs up."""
        return self._brain.hang_up

    async def aclose(self) -> None:
        pass
