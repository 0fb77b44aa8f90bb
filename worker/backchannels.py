"""Which of a caller's words are backchannels: "mhm", "okay", "yeah" said while listening, not to take the turn.

The phrases come from `spec.interruptions.backchannels`, or, unset, the defaults of the STT's language (its
primary subtag; a language without defaults has none, so every word interrupts). Matching is on casefolded
word sequences, greedy and longest first, so "okay got it" is two backchannels and "okay what about my order"
leaves four words that are not. Tenant phrases are hostile input: at most 32 of 40 characters (the spec's
bound), and a transcript is looked at only up to MAX_TRANSCRIPT_CHARS, so one decision costs at most
MAX_WORDS x the longest phrase's word count set lookups.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_TRANSCRIPT_CHARS = 400
MAX_WORDS = 100
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")  # letters and digits of any script, with inner apostrophes

DEFAULTS: dict[str, tuple[str, ...]] = {
    "en": ("mhm", "mm hmm", "mm", "hmm", "uh huh", "okay", "ok", "yeah", "yes", "yep", "right", "sure", "i see",
           "got it", "alright", "all right", "cool"),
    "de": ("mhm", "hm", "ja", "okay", "ok", "genau", "richtig", "klar", "stimmt", "aha", "alles klar"),
    "fr": ("mhm", "hum", "oui", "ouais", "d'accord", "ok", "okay", "voilà", "je vois", "bien sûr"),
    "es": ("mhm", "sí", "vale", "claro", "ok", "okay", "ajá", "ya", "entiendo", "de acuerdo"),
}


def words(text: str) -> list[str]:
    return _WORD.findall(text[:MAX_TRANSCRIPT_CHARS].casefold())[:MAX_WORDS]


class Backchannels:
    def __init__(self, phrases: Iterable[str]):
        self._phrases = frozenset(tuple(words(phrase)) for phrase in phrases) - {()}
        self._longest = max((len(phrase) for phrase in self._phrases), default=0)

    @classmethod
    def for_agent(cls, phrases: list[str] | None, language: str) -> "Backchannels":
        if phrases is not None:
            return cls(phrases)
        return cls(DEFAULTS.get(language.split("-", 1)[0].casefold(), ()))

    def words_beyond(self, text: str) -> tuple[int, int]:
        """(words in `text`, of them not covered by a backchannel phrase)."""
        heard = words(text)
        beyond = position = 0
        while position < len(heard):
            for size in range(min(self._longest, len(heard) - position), 0, -1):
                if tuple(heard[position:position + size]) in self._phrases:
                    position += size
                    break
            else:
                beyond += 1
                position += 1
        return len(heard), beyond
