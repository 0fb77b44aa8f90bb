"""Which of the agent's intents a caller's words mean, and the slots they fill (for the `scripted` LLM).

Everything here is tenant input: patterns are RE2 (linear time, memory-capped), the text is bounded, and
`{slot}` templates are filled by plain substitution (never str.format, which would let a template reach
attributes of the values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from voxfleet.api.tenant_regex import compile_pattern
from voxfleet.api.voiceagent import Intent

MAX_TEXT_CHARS = 2000
SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
DIGITS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
          "seven": "7", "eight": "8", "nine": "9"}
WORD = re.compile(r"[a-z0-9']+")


def normalise(text: str) -> str:
    """Lower case, words only, spoken digit runs joined into numbers ("one two three" -> "123")."""
    out: list[str] = []
    digit_run = ""
    for word in WORD.findall(text[:MAX_TEXT_CHARS].lower()):
        digit = DIGITS.get(word, word if word.isdigit() else None)
        if digit is not None:
            digit_run += digit
            continue
        if digit_run:
            out.append(digit_run)
            digit_run = ""
        out.append(word)
    if digit_run:
        out.append(digit_run)
    return " ".join(out)


@dataclass
class IntentMatch:
    intent: Intent
    slots: dict[str, str] = field(default_factory=dict)


@dataclass
class _CompiledIntent:
    intent: Intent
    keywords: list[set[str]]
    patterns: list[Any]


class IntentMatcher:
    def __init__(self, intents: list[Intent]):
        # Admission's options and memory cap (the spec's budget was checked when it was admitted), cached by content.
        self._intents = [
            _CompiledIntent(intent=intent,
                            keywords=[set(normalise(keyword).split()) for keyword in intent.keywords],
                            patterns=[compile_pattern(pattern, case_sensitive=False)
                                      for pattern in intent.patterns])
            for intent in intents]

    def match(self, text: str) -> IntentMatch | None:
        """The best intent: a pattern beats keywords, more matched words beat fewer, spec order breaks ties."""
        said = normalise(text)
        words = set(said.split())
        best: tuple[float, int, IntentMatch] | None = None
        for order, compiled in enumerate(self._intents):
            score, slots = 0.0, {}
            for pattern in compiled.patterns:
                found = pattern.search(said)
                if found is not None:
                    candidate = 100.0 + len(found.group(0))
                    if candidate > score:
                        score = candidate
                        slots = {k: v for k, v in found.groupdict().items() if v is not None}
            for keyword in compiled.keywords:
                if keyword and keyword <= words:
                    score = max(score, float(len(keyword)))
            if score > 0 and (best is None or score > best[0]):
                best = (score, order, IntentMatch(intent=compiled.intent, slots=slots))
        return best[2] if best else None


def fill(template: str, slots: dict[str, str]) -> str:
    """`{name}` -> slots[name] ('' when missing); nothing else in the template is interpreted."""
    return SLOT.sub(lambda m: slots.get(m.group(1), ""), template)


def fill_arguments(value: Any, slots: dict[str, str]) -> Any:
    if isinstance(value, str):
        return fill(value, slots)
    if isinstance(value, dict):
        return {key: fill_arguments(item, slots) for key, item in value.items()}
    if isinstance(value, list):
        return [fill_arguments(item, slots) for item in value]
    return value
