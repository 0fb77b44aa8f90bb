"""Recognise what an agent said in recorded room audio: PocketSphinx constrained to the phrases a test expects.

The decoder may only produce pieces of the expected phrases (any sequence of their clauses and short runs of
words), so eSpeak's voice decodes near exactly while words nobody expected cannot be made up; `contains` then
asks for the phrase's words in order, allowing a few to be lost (a dropped packet on a loaded machine costs a
word, not the test). A free loop over single words would be as permissive but decodes ~100x slower. Words
missing from the English dictionary (brand names) are left out of their phrase.
"""

from __future__ import annotations

import re

import numpy as np
from pocketsphinx import Decoder

from voxfleet.worker.providers.sphinx_grammar import english_dictionary

SAMPLE_RATE = 16000
_WORD = re.compile(r"[a-z][a-z']*")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class Recogniser:
    def __init__(self, phrases: list[str]):
        dictionary = english_dictionary()
        alternatives, vocabulary = [], set()
        for phrase in phrases:
            for piece in _pieces(phrase):
                known = [w for w in piece if w in dictionary]
                if known and " ".join(known) not in alternatives:
                    alternatives.append(" ".join(known))
                    vocabulary.update(known)
        if not alternatives:
            raise ValueError("none of the expected phrases has a word PocketSphinx knows")
        self._phrases = alternatives
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".dict", delete=False) as handle:
            for word in sorted(vocabulary):
                handle.writelines(dictionary[word])
            self._dictionary = handle.name
        self._jsgf = ("#JSGF V1.0;\ngrammar expected;\npublic <utterance> = <phrase>+;\n"
                      f"<phrase> = {' | '.join(alternatives)};\n")

    def recognise(self, pcm: bytes) -> str:
        decoder = Decoder(samprate=SAMPLE_RATE, lm=None, dict=self._dictionary, loglevel="FATAL")
        decoder.add_jsgf_string("expected", self._jsgf)
        decoder.activate_search("expected")
        # Pad with silence so the decoder sees the utterance's edges.
        silence = np.zeros(SAMPLE_RATE // 4, dtype=np.int16).tobytes()
        decoder.start_utt()
        decoder.process_raw(silence + pcm + silence, False, True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def contains(self, pcm: bytes, phrase: str, *, min_share: float = 0.8) -> bool:
        """Whether at least `min_share` of the phrase's known words were recognised, in order, in the audio."""
        heard = words(self.recognise(pcm))
        wanted = [w for w in words(phrase) if w in english_dictionary()]
        return bool(wanted) and _in_order(wanted, heard) >= min_share * len(wanted)


def _pieces(phrase: str, run: int = 3) -> list[list[str]]:
    """The whole phrase, its clauses, and runs of `run` words: what a partly lost utterance still matches."""
    pieces = [words(phrase)]
    for clause in re.split(r"[,.;:!?]", phrase):
        clause_words = words(clause)
        pieces.append(clause_words)
        pieces.extend(clause_words[i:i + run] for i in range(0, len(clause_words), run))
    return [piece for piece in pieces if piece]


def _in_order(wanted: list[str], heard: list[str]) -> int:
    """Length of the longest common subsequence: how many wanted words were heard in order."""
    previous = [0] * (len(heard) + 1)
    for word in wanted:
        current = [0]
        for j, other in enumerate(heard):
            current.append(previous[j] + 1 if word == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]
