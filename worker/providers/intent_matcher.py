"""Which of the agent's intents a caller's words mean, and the slots they fill (for the `scripted` LLM).

Everything here is tenant input: patterns are RE2 (linear time, memory-capped), the text is bounded, and
`{slot}` templates are filled by plain substitution (never str.format, which would let a template reach
attributes of the values).

The offline recogniser is constrained to the agent's words, so speech it was not built for comes out as a run
of digits and stray keywords ("two three oh close oh" for "can I speak to a real person"). A match therefore
carries its coverage: the share of the heard agent words and numbers the match explains. A low coverage is the honest "not
understood" (the scripted LLM's noMatch path), not a confident wrong answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from voxfleet.api.tenant_regex import compile_pattern
from voxfleet.api.voiceagent import Intent

MAX_TEXT_CHARS = 2000
SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
DIGITS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
          "six": "6", "seven": "7", "eight": "8", "nine": "9"}
TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
         "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
        "ninety": 90}
REPEATS = {"double": 2, "triple": 3}
SCALES = {"hundred": 100, "thousand": 1000}
MAX_NUMBER_DIGITS = 32  # a spoken number longer than this is not an order number; it is cut, never grown
WORD = re.compile(r"[a-z0-9']+")
# What a caller says before the corrected value ("no, I said 7302", "sorry, I meant ..."); English only for now.
CORRECTION_CUES = frozenset({"no", "not", "nope", "sorry", "i", "said", "meant", "mean", "it", "is", "it's", "was",
                             "actually", "wrong", "that's", "the", "number", "um", "uh"})
CORRECTION_OPENERS = ("no", "nope", "not", "sorry", "actually", "i")  # a correction starts with one of these


def _number_words(words: list[str], start: int) -> tuple[str, int]:
    """The digits a run of number words at `start` says, and where the run ends ("" and start if none).

    Digit by digit ("seven three oh one"), in pairs ("seventy three oh one", "twenty five ten"), with
    "double four", and "three hundred and five". One pass, each word looked at a bounded number of times.
    """
    out = ""
    i = start
    while i < len(words) and len(out) < MAX_NUMBER_DIGITS:
        word = words[i]
        if word in DIGITS or word.isdigit():
            out += DIGITS.get(word, word)
            i += 1
        elif word in REPEATS and i + 1 < len(words) and words[i + 1] in DIGITS:
            out += DIGITS[words[i + 1]] * REPEATS[word]
            i += 2
        elif word in TEENS:
            out += str(TEENS[word])
            i += 1
        elif word in TENS:
            if i + 1 < len(words) and words[i + 1] in DIGITS and DIGITS[words[i + 1]] != "0":
                out += str(TENS[word] + int(DIGITS[words[i + 1]]))
                i += 2
            else:
                out += str(TENS[word])
                i += 1
        elif word in SCALES and out and len(out) <= 3 and not out.startswith("0"):
            # "three hundred and five": the digits so far are the multiplier, a following small number is added.
            rest, after = _below(words, i + 1 + (i + 1 < len(words) and words[i + 1] == "and"), SCALES[word])
            out = str(int(out) * SCALES[word] + rest)
            i = after if rest else i + 1
        else:
            break
    return out[:MAX_NUMBER_DIGITS], i


def _below(words: list[str], start: int, limit: int) -> tuple[int, int]:
    """A small number (under `limit`) said in words at `start`: "five", "twenty", "twenty five", "fifteen"."""
    if start >= len(words):
        return 0, start
    word = words[start]
    if word in TEENS:
        return TEENS[word], start + 1
    if word in TENS:
        if start + 1 < len(words) and words[start + 1] in DIGITS and DIGITS[words[start + 1]] != "0":
            return TENS[word] + int(DIGITS[words[start + 1]]), start + 2
        return TENS[word], start + 1
    if word in DIGITS and DIGITS[word] != "0":
        return int(DIGITS[word]), start + 1
    return 0, start


def normalise(text: str) -> str:
    """Lower case, words only, spoken numbers joined into digits ("seventy three oh one" -> "7301")."""
    words = WORD.findall(text[:MAX_TEXT_CHARS].lower())
    out: list[str] = []
    i = 0
    while i < len(words):
        number, after = _number_words(words, i)
        if number and not (words[i] == "o" and after == i + 1):  # a lone "o" is a letter, not a zero
            out.append(number)
            i = after
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)


@dataclass
class IntentMatch:
    intent: Intent
    slots: dict[str, str] = field(default_factory=dict)
    coverage: float = 1.0  # share of the heard words this match explains (0..1)
    corrected: bool = False  # the caller corrected the previous turn's slots ("no, I said 7302")
    said: str = ""  # the normalised words it was matched on (a correction: the previous turn's, corrected)


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
        self._vocabulary = {word for compiled in self._intents for keyword in compiled.keywords for word in keyword}

    def match(self, text: str) -> IntentMatch | None:
        """The best intent: a pattern beats keywords, more matched words beat fewer, spec order breaks ties."""
        said = normalise(text)
        words = said.split()
        best: tuple[float, int, IntentMatch] | None = None
        for order, compiled in enumerate(self._intents):
            score, slots, explained = 0.0, {}, set()
            for pattern in compiled.patterns:
                found = pattern.search(said)
                if found is not None:
                    candidate = 100.0 + len(found.group(0))
                    if candidate > score:
                        score = candidate
                        slots = {k: v for k, v in found.groupdict().items() if v is not None}
                        explained = set(found.group(0).split())
            for keyword in compiled.keywords:
                if keyword and keyword <= set(words):
                    score = max(score, float(len(keyword)))
                    explained |= keyword
            if score > 0 and (best is None or score > best[0]):
                # Words outside the agent's vocabulary are neutral (a general recogniser hears them honestly);
                # agent words and numbers the match leaves unexplained are what a forced grammar makes up.
                weighed = [word for word in words if word in explained or word in self._vocabulary or word.isdigit()]
                coverage = sum(1 for word in weighed if word in explained) / max(1, len(weighed))
                best = (score, order, IntentMatch(intent=compiled.intent, slots=slots, coverage=coverage,
                                                      said=said))
        return best[2] if best else None

    def correction(self, text: str, previous: "Turn") -> IntentMatch | None:
        """`text` read as a correction of the previous turn's match, when its intent is `correctable`.

        The new value replaces the old slot value in the previous turn's words, and the intent's own patterns
        are run again on the result: "where is my order 7301" + "no, I said 7302" -> "where is my order 7302".
        """
        match = previous.match
        if not match.intent.correctable or not match.slots:
            return None
        words = normalise(text).split()
        value = [word for word in words if word not in CORRECTION_CUES]
        if not value or len(value) > 3 or words[0] not in CORRECTION_OPENERS:
            return None
        said = normalise(previous.heard)
        for old in sorted(set(match.slots.values()), key=len, reverse=True):
            if old and old in said:
                retried = self.match(said.replace(old, " ".join(value), 1))
                if retried is not None and retried.intent is match.intent and retried.slots != match.slots:
                    retried.corrected = True
                    retried.coverage = 1.0 if len(value) == 1 else 1.0 / len(value)
                    return retried
        return None


@dataclass
class Turn:
    """What the caller said on a turn the agent understood, and what it was taken to mean."""

    heard: str
    match: IntentMatch


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
