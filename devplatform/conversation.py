"""Taking turns with an agent: hear the greeting, say each line, wait for the answer, time it.

A turn's TTFA is what the caller hears: from the end of the caller's speech (the last voiced frame sent) to the
agent's first voiced frame heard after it. What each side said comes from the room's transcripts, when the
agent publishes them.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from voxfleet.devplatform.caller import Caller

LATE_TRANSCRIPT_S = 1.0  # transcripts may trail the audio they describe


@dataclass
class Line:
    """Something for the caller to say: text (spoken by eSpeak) or audio (a WAV's samples)."""
    text: str = ""
    audio: np.ndarray | None = None
    label: str = ""  # how to show it (the WAV's name)

    def shown(self) -> str:
        return self.text or self.label or "(audio)"


@dataclass
class Turn:
    said: str
    started: float  # the caller's first frame of the line went out
    voice_ended: float  # its last voiced frame went out: TTFA starts here
    reply_start: float | None = None
    reply_end: float | None = None
    agent_text: str = ""
    caller_text: str = ""  # what the agent's speech-to-text made of the caller (from its transcript)

    @property
    def ttfa_s(self) -> float | None:
        return None if self.reply_start is None else self.reply_start - self.voice_ended

    def summary(self, audio_origin: float | None = None) -> dict:
        """``audio_origin``: when the saved recording starts, so the answer can be found in it (seconds)."""
        result = {"said": self.said, "heard": self.caller_text or None, "agentText": self.agent_text or None,
                  "ttfaMs": None if self.ttfa_s is None else round(self.ttfa_s * 1000)}
        if audio_origin is not None and self.reply_start is not None and self.reply_end is not None:
            result["answerInAudioS"] = [round(self.reply_start - audio_origin, 2),
                                        round(self.reply_end - audio_origin, 2)]
        return result


@dataclass
class Conversation:
    joined_at: float
    greeting_text: str = ""
    greeting_heard: bool = False
    turns: list[Turn] = field(default_factory=list)

    def ttfas_ms(self) -> list[float]:
        return [t.ttfa_s * 1000 for t in self.turns if t.ttfa_s is not None]

    def summary(self, audio_origin: float | None = None) -> dict:
        ttfas = self.ttfas_ms()
        return {"greeting": self.greeting_text or None, "greetingHeard": self.greeting_heard,
                "turns": [t.summary(audio_origin) for t in self.turns], "answered": len(ttfas),
                "asked": len(self.turns),
                "ttfaP50Ms": round(statistics.median(ttfas)) if ttfas else None,
                "ttfaMaxMs": round(max(ttfas)) if ttfas else None}


async def converse(caller: Caller, lines: list[Line], *, join_timeout: float = 30.0,
                   greeting_timeout: float = 8.0, answer_timeout: float = 20.0, silence_s: float = 0.7,
                   on_turn: Callable[[Turn], None] | None = None,
                   on_greeting: Callable[[Conversation], None] | None = None) -> Conversation:
    """Run the call: wait for the agent to join and greet, then say each line and wait for its answer."""
    try:
        await asyncio.wait_for(caller.agent_joined.wait(), join_timeout)
    except TimeoutError:
        raise TimeoutError(f"no agent joined the room within {join_timeout:.0f} s") from None
    conversation = Conversation(joined_at=time.monotonic())
    heard_until = conversation.joined_at
    try:
        greeting = await caller.wait_for_agent_speech(after=conversation.joined_at - 1.0, timeout=greeting_timeout,
                                                      silence_s=silence_s)
        conversation.greeting_heard = True
        heard_until = greeting.end
    except TimeoutError:
        pass  # an agent without a greeting waits for the caller
    conversation.greeting_text = caller.transcripts.text("agent", until=time.monotonic())
    if on_greeting is not None:
        on_greeting(conversation)

    for line in lines:
        # Speak only into silence: a line said over the agent would be a barge-in, not a turn.
        await caller.wait_for_agent_silence(after=heard_until, timeout=answer_timeout, silence_s=silence_s)
        spoken = await (caller.say(line.text) if line.audio is None
                        else caller.play(line.audio, text=line.label))
        turn = Turn(said=line.shown(), started=spoken.started, voice_ended=spoken.voice_ended)
        try:
            reply = await caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=answer_timeout,
                                                       silence_s=silence_s)
            turn.reply_start, turn.reply_end = reply.start, reply.end
            heard_until = reply.end
        except TimeoutError:
            heard_until = time.monotonic()
        await asyncio.sleep(0)  # let transcripts that arrived with the audio be read
        turn.agent_text = caller.transcripts.text("agent", since=spoken.started, until=time.monotonic())
        turn.caller_text = caller.transcripts.text("caller", since=spoken.started, until=time.monotonic())
        conversation.turns.append(turn)
        if on_turn is not None:
            on_turn(turn)
    return conversation


async def collect_late_transcripts(caller: Caller, conversation: Conversation, *,
                                   linger_s: float = LATE_TRANSCRIPT_S) -> None:
    """Give transcripts that trail the last answer a moment, then fill them into the turns they belong to."""
    await asyncio.sleep(linger_s)
    for turn, following in zip(conversation.turns, conversation.turns[1:] + [None]):
        until = following.started - 0.001 if following is not None else time.monotonic()
        turn.agent_text = caller.transcripts.text("agent", since=turn.started, until=until) or turn.agent_text
        turn.caller_text = caller.transcripts.text("caller", since=turn.started, until=until) or turn.caller_text
