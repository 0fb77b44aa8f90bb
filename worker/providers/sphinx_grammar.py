"""A JSGF grammar and a small pronunciation dictionary built from the phrases an agent expects.

PocketSphinx with the full English language model is good on natural speech and weak on eSpeak's voice, and
each decoder with the full dictionary costs ~27 MiB. Constrained to the agent's own phrases (intent keywords,
the literal words of its patterns, digits when a pattern wants numbers) it is exact on IVR-style agents and a
decoder costs well under 1 MiB, so the worker can keep one per slot. The caller bot's recogniser uses the
same builder with the phrases it expects to hear.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from functools import lru_cache

from pocketsphinx import get_model_path

from voxfleet.api.voiceagent import Intent

DIGIT_WORDS = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_WORD = re.compile(r"[a-z][a-z']*")
_WANTS_DIGITS = re.compile(r"\\d|\[0-9|\[\^?[0-9]")
# Regex syntax that is not speech: escapes (\D, \s, \b...) and named-group heads. Left in, "\D{0,24}" put a word
# "d" (D IY) in the grammar, and that short word turned up in transcripts of off-script speech.
_REGEX_SYNTAX = re.compile(r"\(\?P<[^>]*>|\\[A-Za-z]")
CORRECTION_PHRASES = ("no", "i said", "i meant", "sorry", "actually")
MAX_PHRASES = 2048
MAX_WORDS_PER_PHRASE = 16


@lru_cache(maxsize=1)
def english_dictionary() -> dict[str, list[str]]:
    """The wheel's CMU dictionary: word -> its pronunciation lines (alternates included)."""
    entries: dict[str, list[str]] = {}
    path = os.path.join(get_model_path(), "en-us", "cmudict-en-us.dict")
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            head = line.split(" ", 1)[0]
            entries.setdefault(head.split("(", 1)[0], []).append(line if line.endswith("\n") else line + "\n")
    return entries


@dataclass(frozen=True)
class Grammar:
    jsgf: str
    dictionary_path: str
    words: frozenset[str]


def phrases_from_intents(intents: list[Intent]) -> list[str]:
    phrases: list[str] = []
    for intent in intents:
        phrases.extend(intent.keywords)
        for pattern in intent.patterns:
            phrases.extend(_WORD.findall(_REGEX_SYNTAX.sub(" ", pattern).lower()))
            if _WANTS_DIGITS.search(pattern):
                phrases.extend(DIGIT_WORDS)
        if intent.correctable:  # so "no, I said seven three oh two" can be heard at all
            phrases.extend(CORRECTION_PHRASES)
    return phrases


def build_grammar(phrases: list[str], *, name: str = "expected") -> Grammar | None:
    """Any sequence of the known phrases; words missing from the dictionary drop their phrase. None if empty."""
    dictionary = english_dictionary()
    alternatives: list[str] = []
    words: set[str] = set()
    for phrase in phrases[:MAX_PHRASES]:
        tokens = _WORD.findall(phrase.lower())[:MAX_WORDS_PER_PHRASE]
        if not tokens or any(token not in dictionary for token in tokens):
            continue
        alternative = " ".join(tokens)
        if alternative not in alternatives:
            alternatives.append(alternative)
            words.update(tokens)
    if not alternatives:
        return None
    jsgf = (f"#JSGF V1.0;\ngrammar {name};\npublic <utterance> = <phrase>+;\n"
            f"<phrase> = {' | '.join(alternatives)};\n")
    handle, path = tempfile.mkstemp(prefix="voxfleet-sphinx-", suffix=".dict")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        for word in sorted(words):
            out.writelines(dictionary[word])
    return Grammar(jsgf=jsgf, dictionary_path=path, words=frozenset(words))
