"""The worker's PocketSphinx path on real eSpeak audio (no room, no mocks): the cepstral mean comes from the
utterance, speech outside the grammar is an honest REJECTED, and regex syntax never becomes a grammar word."""

from __future__ import annotations

import numpy as np

from voxfleet.api.voiceagent import Intent
from voxfleet.devplatform.speech import synthesize
from voxfleet.worker.providers.pocketsphinx_stt import REJECTED, SAMPLE_RATE, SphinxDecoderPool, Utterance
from voxfleet.worker.providers.sphinx_grammar import build_grammar, phrases_from_intents

INTENTS = [Intent(name="order-status", keywords=["order", "where is my order"],
                  patterns=[r"(order|number)\D{0,24}?(?P<order_id>[0-9]{1,10})"], reply="{result}"),
           Intent(name="hours", keywords=["opening hours"], reply="We are open from nine to six.")]
CHUNK = SAMPLE_RATE * 2 // 50  # 20 ms, as the room hands frames over


def heard(decoders, text: str) -> tuple[str, Utterance]:
    """`text` laid out as the worker's STT gets it: caller silence and the VAD's start delay in the pre-roll."""
    audio = np.concatenate([np.zeros(SAMPLE_RATE // 4, np.int16), synthesize(text),
                            np.zeros(SAMPLE_RATE // 5, np.int16)]).tobytes()
    start = (SAMPLE_RATE // 4 + SAMPLE_RATE // 5) * 2
    utterance = Utterance(decoders, audio[:start])
    for offset in range(start, len(audio), CHUNK):
        utterance.feed(audio[offset:offset + CHUNK])
    return utterance.finish(), utterance


def test_regex_syntax_is_not_a_word_of_the_grammar():
    grammar = build_grammar(phrases_from_intents(INTENTS))
    assert "d" not in grammar.words and "p" not in grammar.words
    assert {"order", "number", "seven", "oh"} <= grammar.words


def test_an_order_number_is_heard_and_chatter_is_rejected():
    decoders = SphinxDecoderPool(build_grammar(phrases_from_intents(INTENTS)), 1).acquire()
    text, utterance = heard(decoders, "where is my order one two three four")
    print(f"order line: {text!r}, score per frame {utterance.score_per_frame:.1f}")
    assert text == "where is my order one two three four"
    # The mean was taken from this utterance, not the model's prior (40,3,-1,...): eSpeak's c0 is far above 40.
    assert float(decoders.words.get_cmn().split(",")[0]) > 45
    text, utterance = heard(decoders, "my dog just ran into the garden")
    print(f"chatter: {text!r}, score per frame {utterance.score_per_frame}")
    assert text == REJECTED
    text, utterance = heard(decoders, "mhm")  # wordless and short: no words, so no interruption over the agent
    print(f"mhm: {text!r}")
    assert text == ""


def test_silence_alone_is_no_transcript():
    decoders = SphinxDecoderPool(build_grammar(phrases_from_intents(INTENTS)), 1).acquire()
    utterance = Utterance(decoders, bytes(SAMPLE_RATE))
    utterance.feed(bytes(CHUNK))
    assert utterance.finish() == ""
