"""The barge-in decision (worker/barge_in.py) and backchannel matching (worker/backchannels.py), frame by frame.

No room here: what a caller hears is tests/worker/test_barge_in_heard.py. These pin the decision table (pause at
the voice, interruption on words, resume on backchannels or silence) and the worst-case cost of hostile lists.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)

from voxfleet.api.voiceagent import Interruptions
from voxfleet.worker.backchannels import DEFAULTS, MAX_TRANSCRIPT_CHARS, Backchannels, words
from voxfleet.worker.barge_in import FINAL_TRANSCRIPT_GRACE_S, PauseThenDecideStrategy


class RecordingOutput:
    """Stands in for the LiveKit output's pause/resume (its audio is judged in the room by the realtime tests)."""

    def __init__(self):
        self.calls: list[str] = []

    def pause(self) -> float:
        self.calls.append("pause")
        return 0.2

    def resume(self) -> None:
        self.calls.append("resume")


class Harness:
    def __init__(self, *, min_words=0, timeout_s=0.3, phrases=None):
        self.output = RecordingOutput()
        self.outcomes: list[str] = []
        self.events: list[str] = []
        self.strategy = PauseThenDecideStrategy(
            output=self.output, backchannels=Backchannels.for_agent(phrases, "en-US"), min_words=min_words,
            false_interruption_timeout_s=timeout_s, on_outcome=self.outcomes.append)

        async def started(_strategy, params):
            self.events.append(f"turn(interrupt={params.enable_interruptions})")

        async def reset(_strategy):
            self.events.append("reset")

        async def broadcast(_strategy, frame_cls, **_kwargs):
            self.events.append(f"broadcast {frame_cls.__name__}")

        self.strategy.add_event_handler("on_user_turn_started", started)
        self.strategy.add_event_handler("on_reset_aggregation", reset)
        self.strategy.add_event_handler("on_broadcast_frame", broadcast)

    async def feed(self, *frames):
        for frame in frames:
            await self.strategy.process_frame(frame)


def final(text):
    return TranscriptionFrame(text=text, user_id="caller", timestamp="")


def interim(text):
    return InterimTranscriptionFrame(text=text, user_id="caller", timestamp="")


async def test_voice_over_the_agent_pauses_and_real_words_interrupt():
    h = Harness()
    await h.feed(BotStartedSpeakingFrame(), VADUserStartedSpeakingFrame())
    assert h.output.calls == ["pause"] and h.events == []  # paused, nothing cancelled yet
    await h.feed(interim("no stop"))
    assert h.events == ["turn(interrupt=True)"] and h.outcomes == ["paused", "interrupted"]
    assert h.output.calls == ["pause"]  # the interruption (not a resume) ends the pause


async def test_backchannels_resume_and_leave_no_text_for_the_next_turn():
    h = Harness()
    await h.feed(BotStartedSpeakingFrame(), VADUserStartedSpeakingFrame(), interim("okay"))
    assert h.events == []  # an interim backchannel decides nothing yet: more words may follow
    await h.feed(VADUserStoppedSpeakingFrame(), final("Okay, got it"))
    assert h.output.calls == ["pause", "resume"] and h.events == ["reset"]
    assert h.outcomes == ["paused", "backchannel"]
    await asyncio.sleep(FINAL_TRANSCRIPT_GRACE_S + 0.35)  # the deadline was cancelled: no second resume
    assert h.output.calls == ["pause", "resume"]


async def test_a_backchannel_with_a_question_is_an_interruption():
    h = Harness()
    await h.feed(BotStartedSpeakingFrame(), VADUserStartedSpeakingFrame(), final("okay but where is my order"))
    assert h.events == ["turn(interrupt=True)"]


async def test_no_words_resume_after_the_timeout_not_before():
    h = Harness(timeout_s=0.4)
    await h.feed(BotStartedSpeakingFrame(), VADUserStartedSpeakingFrame(), VADUserStoppedSpeakingFrame())
    await asyncio.sleep(0.2)
    assert h.output.calls == ["pause"]
    await asyncio.sleep(0.35)
    assert h.output.calls == ["pause", "resume"] and h.outcomes == ["paused", "resumed"] and h.events == []


async def test_voice_again_before_the_timeout_keeps_the_pause():
    h = Harness(timeout_s=0.3)
    await h.feed(BotStartedSpeakingFrame(), VADUserStartedSpeakingFrame(), VADUserStoppedSpeakingFrame())
    await asyncio.sleep(0.2)
    await h.feed(VADUserStartedSpeakingFrame())  # the caller goes on: the deadline waits for the next stop
    await asyncio.sleep(0.3)
    assert h.output.calls == ["pause"]
    await h.feed(final("actually tell me the hours"))
    assert h.events == ["turn(interrupt=True)"]


async def test_timeout_zero_ends_the_reply_for_noise():
    h = Harness(timeout_s=0.0)
    await h.feed(BotStartedSpeakingFrame(), VADUserStartedSpeakingFrame(), VADUserStoppedSpeakingFrame())
    await asyncio.sleep(FINAL_TRANSCRIPT_GRACE_S + 0.1)
    assert h.events == ["broadcast InterruptionFrame"] and h.outcomes == ["paused", "ended"]
    assert h.output.calls == ["pause"]


async def test_min_words_counts_only_words_beyond_backchannels():
    h = Harness(min_words=3)
    await h.feed(BotStartedSpeakingFrame(), VADUserStartedSpeakingFrame(), final("yeah wait"))
    assert h.events == ["reset"] and h.output.calls == ["pause", "resume"]  # one real word of three
    await h.feed(VADUserStartedSpeakingFrame(), interim("okay wait stop now"))
    assert h.events == ["reset", "turn(interrupt=True)"]


async def test_a_silent_agent_starts_the_turn_at_the_voice_as_before():
    h = Harness()
    await h.feed(BotStartedSpeakingFrame(), BotStoppedSpeakingFrame(), VADUserStartedSpeakingFrame())
    assert h.events == ["turn(interrupt=True)"] and h.output.calls == []
    words_first = Harness(min_words=2)
    await words_first.feed(VADUserStartedSpeakingFrame())
    assert words_first.events == []  # minWords > 0: a transcript starts the turn (one word when the agent is silent)
    await words_first.feed(interim("okay"))
    assert words_first.events == ["turn(interrupt=True)"]  # a silent agent: even "okay" is the caller's turn


async def test_an_interruption_from_elsewhere_ends_the_pause_without_a_resume():
    h = Harness(timeout_s=0.2)
    await h.feed(BotStartedSpeakingFrame(), VADUserStartedSpeakingFrame(), InterruptionFrame(),
                 VADUserStoppedSpeakingFrame())
    await asyncio.sleep(FINAL_TRANSCRIPT_GRACE_S + 0.1)
    assert h.output.calls == ["pause"]


def test_default_backchannels_follow_the_stt_language():
    assert Backchannels.for_agent(None, "en-GB").words_beyond("mm hmm, I see. Sure!") == (5, 0)
    assert Backchannels.for_agent(None, "de-DE").words_beyond("Ja, genau") == (2, 0)
    assert Backchannels.for_agent(None, "xx").words_beyond("okay") == (1, 1)  # no defaults: every word counts
    assert Backchannels.for_agent([], "en-US").words_beyond("okay") == (1, 1)  # empty list: every word interrupts
    assert Backchannels.for_agent(["da"], "en-US").words_beyond("okay da") == (2, 1)  # the spec's list replaces
    assert all(words(phrase) for phrases in DEFAULTS.values() for phrase in phrases)


def test_unicode_backchannels_match_casefolded_and_punctuation_blind():
    backchannels = Backchannels(["Ça va", "ДА", "はい", "straße"])
    assert backchannels.words_beyond("ça va... да! はい STRASSE") == (5, 0)  # casefold: STRASSE is straße
    assert backchannels.words_beyond("Ça va bien") == (3, 1)
    assert Backchannels(["___", "!!!", " "]).words_beyond("___ !!!") == (0, 0)  # no words: no phrases


def test_hostile_lists_cost_is_bounded():
    """32 phrases of 40 characters (the spec's limits, checked by its model) against the longest transcript."""
    # Each phrase is 9 words a transcript of "a00"s matches, then one it does not: every position tries every
    # length from 10 down and fails.
    phrases = ["a00 " * 9 + f"b{i:02d}" for i in range(32)]
    spec = Interruptions(backchannels=phrases)
    backchannels = Backchannels.for_agent(spec.backchannels, "en")
    worst = "a00 " * (MAX_TRANSCRIPT_CHARS * 4)  # far beyond the bound: only its first characters are read
    started = time.perf_counter()
    for _ in range(100):
        heard, beyond = backchannels.words_beyond(worst)
    per_decision_ms = (time.perf_counter() - started) * 1000 / 100
    print(f"backchannel decision, 32 phrases of 40 chars, {len(worst)}-char transcript: {per_decision_ms:.3f} ms")
    assert heard == 100 and beyond == heard and max(len(phrase) for phrase in phrases) <= 40
    assert per_decision_ms < 5
    with pytest.raises(ValueError):
        Interruptions(backchannels=["x" * 41])
    with pytest.raises(ValueError):
        Interruptions(backchannels=["ok"] * 33)


def test_the_timeout_is_bounded_and_a_pause_cannot_hold_the_output_past_its_write_timeout():
    from voxfleet.worker.livekit_output import PAUSE_LIMIT_S, WRITE_TIMEOUT_S

    for bad in (-1, 10001, "2s"):
        with pytest.raises(ValueError):
            Interruptions.model_validate({"falseInterruptionTimeoutMs": bad})
    longest = Interruptions.model_validate({"falseInterruptionTimeoutMs": 10000}).false_interruption_timeout_ms
    # The longest timeout plus 10 s of a wordless sound fits in a pause, and a pause in Pipecat's write timeout
    # (past it Pipecat would end the call as a dead peer).
    assert longest / 1000 + 10 <= PAUSE_LIMIT_S < WRITE_TIMEOUT_S
