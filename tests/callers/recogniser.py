"""Recognise what an agent said in recorded room audio: PocketSphinx constrained to the phrases a test expects.

Any sequence of the given phrases is a valid sentence (a greeting followed by an answer, or one of them), so
eSpeak's voice decodes exactly while words nobody expected cannot be made up. Words missing from the English
dictionary are left out of their phrase (brand names), the rest of the phrase still counts.
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
            known = [w for w in words(phrase) if w in dictionary]
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

    def contains(self, pcm: bytes, phrase: str) -> bool:
        """Whether the phrase's known words were recognised, in order, in the audio."""
        heard = " ".join(words(self.recognise(pcm)))
        wanted = " ".join(w for w in words(phrase) if w in english_dictionary())
        return bool(wanted) and wanted in heard
