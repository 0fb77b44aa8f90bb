"""The worker's PocketSphinx path on real eSpeak audio (no room, no mocks): the cepstral mean comes from the
utterance, speech outside the grammar is an honest REJECTED, and regex syntax never becomes a grammar word."""

from __future__ import annotations

import numpy as np

from voxfleet.api.voiceagent import Intent
from voxfleet.devplatform.speech import synthesize
from voxfleet.worker.providers.intent_matcher import IntentMatcher
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


RENDERINGS = 12  # eSpeak's output differs on every call (its voice state runs on), as a caller's would


def test_an_order_number_is_heard_and_chatter_is_rejected():
    """Judged over several renderings of each line: one rendering is one sample of a voice, not the voice."""
    decoders = SphinxDecoderPool(build_grammar(phrases_from_intents(INTENTS)), 1).acquire()
    matcher = IntentMatcher(INTENTS)
    lines = [heard(decoders, "where is my order one two three four") for _ in range(RENDERINGS)]
    whole = sum(text == "where is my order one two three four" for text, _ in lines)
    print(f"order line over {RENDERINGS} renderings: {whole} heard whole, "
          f"heard {sorted({text for text, _ in lines})}, score per frame "
          f"{min(u.score_per_frame for _, u in lines):.1f}..{max(u.score_per_frame for _, u in lines):.1f}")
    for text, _ in lines:  # what the tool needs, in every rendering: the intent and the number
        match = matcher.match(text)
        assert match is not None and match.intent.name == "order-status", text
        assert match.slots == {"order_id": "1234"}, text
    assert whole >= RENDERINGS // 4  # locally 35 of 40; a rendering now and then loses the lead-in "where is my"
    # The mean was taken from this utterance, not the model's prior (40,3,-1,...): eSpeak's c0 is far above 40.
    assert float(decoders.words.get_cmn().split(",")[0]) > 45
    chatter = [heard(decoders, "my dog just ran into the garden")[0] for _ in range(RENDERINGS)]
    print(f"chatter: {chatter.count(REJECTED)} of {RENDERINGS} rejected")
    assert chatter == [REJECTED] * RENDERINGS
    backchannel = [heard(decoders, "mhm")[0] for _ in range(RENDERINGS)]
    print(f"mhm: {backchannel.count('')} of {RENDERINGS} wordless")
    assert backchannel == [""] * RENDERINGS  # no words, so no interruption over the agent


def test_silence_alone_is_no_transcript():
    decoders = SphinxDecoderPool(build_grammar(phrases_from_intents(INTENTS)), 1).acquire()
    utterance = Utterance(decoders, bytes(SAMPLE_RATE))
    utterance.feed(bytes(CHUNK))
    assert utterance.finish() == ""
