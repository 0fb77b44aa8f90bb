"""Judges each caller turn of a call: answered (a success), repeated, hung_up or unanswered.

A turn is the caller speaking words and then stopping for the agent to answer (a turn without words, a noise
barge-in, is not judged here: it is a false interruption). Its outcome is known only later, so the judge holds
the latest turn until one of these tells:

- the caller's next turn with words: `repeated` if it says nearly the same words again (the caller was not
  understood or did not hear the answer), else `answered` if the agent had begun answering, else `unanswered`
  (the caller had to go on without an answer);
- the end of the call: `answered` if the agent had finished answering, `hung_up` if the caller left before the
  answer was over (mid-answer or still waiting for it), `unanswered` if the call ended any other way first
  (idle, deleted, drained, maximum duration, error).

Turn success rate = answered / all judged turns (docs/operations.md). The judge keeps the words of the latest
turn only, in memory, to compare them with the next; they go nowhere else, whatever recordTranscripts says.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal, get_args

TurnOutcome = Literal["answered", "repeated", "hung_up", "unanswered"]
TURN_OUTCOMES: tuple[TurnOutcome, ...] = get_args(TurnOutcome)

# Two turns are a repeat when the shorter one's words appear, in order, in the longer one at this share, and the
# shorter has at least half the longer's words: "your opening hours" after "what are your opening hours" is a
# repeat, "yes please tell me a story" after "yes please" is not.
REPEAT_SHARE = 0.8
REPEAT_LENGTH_RATIO = 0.5
# One-word turns ("yes", "no") are often the same word to different questions: never judged repeats.
MIN_REPEAT_WORDS = 2
MAX_WORDS = 64  # bounds the comparison's cost whatever a caller says

_WORD = re.compile(r"[\w']+")


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())[:MAX_WORDS]


def repeats(previous: list[str], current: list[str]) -> bool:
    shorter, longer = sorted((previous, current), key=len)
    if len(shorter) < MIN_REPEAT_WORDS or len(shorter) < REPEAT_LENGTH_RATIO * len(longer):
        return False
    matcher = SequenceMatcher(a=shorter, b=longer, autojunk=False)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    return matched >= REPEAT_SHARE * len(shorter)


@dataclass
class _Turn:
    words: list[str]
    answer_started: bool = False
    answer_finished: bool = False


class TurnJudge:
    def __init__(self, on_outcome: Callable[[TurnOutcome], None]):
        self._on_outcome = on_outcome
        self._pending: _Turn | None = None

    def caller_turn_ended(self, text: str) -> None:
        """The caller stopped for an answer after saying `text` (empty: a turn without words, not judged)."""
        words = words_of(text)
        if not words:
            return
        previous, self._pending = self._pending, _Turn(words)
        if previous is None:
            return
        if repeats(previous.words, words):
            self._on_outcome("repeated")
        elif previous.answer_started:
            self._on_outcome("answered")
        else:
            self._on_outcome("unanswered")

    def agent_started_speaking(self) -> None:
        if self._pending is not None:
            self._pending.answer_started = True

    def agent_stopped_speaking(self) -> None:
        if self._pending is not None and self._pending.answer_started:
            self._pending.answer_finished = True

    def call_ended(self, *, caller_hung_up: bool) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if pending.answer_finished:
            self._on_outcome("answered")
        elif caller_hung_up:
            self._on_outcome("hung_up")
        else:
            self._on_outcome("unanswered")
