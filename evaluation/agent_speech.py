"""What the agent said in a stretch of the call, from the best source there is:

1. the session's eval transcript (the worker's record, returned by the gateway for eval-mode sessions of agents
   that record transcripts);
2. transcripts the agent published in the room (LiveKit's `lk.transcription` text streams);
3. the audio the caller heard, recognised here by PocketSphinx's general English model (slow and approximate:
   good on natural voices, weak on eSpeak's; used only when a turn has words to check and nothing else exists).

Windows are epoch seconds for the eval transcript and monotonic seconds for what the caller recorded.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import numpy as np

from voxfleet.evaluation.report_models import TextSource
from voxfleet.evaluation.scenario_call import CallTimeline

_WORD = re.compile(r"[a-z0-9']+")
_DIGITS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
           "seven": "7", "eight": "8", "nine": "9"}
SAMPLE_RATE = 16000
MAX_RECOGNISED_SECONDS = 60


@dataclass(frozen=True)
class Window:
    """A stretch of the call: [start, end) in this process's monotonic seconds."""
    start: float
    end: float


@dataclass(frozen=True)
class SpeechInWindow:
    agent_text: str
    source: TextSource
    caller_heard_as: str | None = None


def words(text: str) -> list[str]:
    """Lower-case words with spoken digits and digit runs joined ("order one two 3" -> ["order", "123"]), so
    "1234", "1 2 3 4" and "one two three four" all match each other."""
    out: list[str] = []
    run = ""
    for word in _WORD.findall(text.lower()):
        digit = _DIGITS.get(word, word if word.isdigit() else None)
        if digit is not None:
            run += digit
            continue
        if run:
            out.append(run)
            run = ""
        out.append(word)
    if run:
        out.append(run)
    return out


def mentions(text: str, phrase: str) -> bool:
    """Whether the phrase's words occur together, in order, in the text (whole words)."""
    wanted, said = words(phrase), words(text)
    if not wanted:
        return False
    return any(said[i:i + len(wanted)] == wanted for i in range(len(said) - len(wanted) + 1))


def speech_in(timeline: CallTimeline, window: Window, *, recognise: bool) -> SpeechInWindow:
    record = timeline.results.record if timeline.results else None
    if record is not None:
        start, end = timeline.wall(window.start), timeline.wall(window.end)
        agent = [line.text for line in record.transcript if line.role == "agent" and start <= line.at < end]
        caller = [line.text for line in record.transcript if line.role == "caller" and start <= line.at < end]
        return SpeechInWindow(_join(agent), "transcript", _join(caller) or None)
    room = [line for line in timeline.room_lines if window.start <= line.at < window.end and line.final]
    if room:
        return SpeechInWindow(_join(l.text for l in room if l.role == "agent"), "room",
                              _join(l.text for l in room if l.role == "caller") or None)
    if recognise and timeline.heard is not None:
        pcm = timeline.heard.audio(window.start, window.end)
        if any(voiced for at, _, voiced in list(timeline.heard.frames) if window.start <= at < window.end):
            return SpeechInWindow(recognise_speech(pcm), "recognised")
    return SpeechInWindow("", "none")


def _join(texts) -> str:
    return " ".join(" ".join(t.split()) for t in texts if t and t.strip())


_decoder_lock = threading.Lock()
_decoder = None


def recognise_speech(pcm: bytes) -> str:
    """PocketSphinx with its general en-us model (loaded once, ~1.5 s); one utterance at a time."""
    global _decoder
    from pocketsphinx import Decoder

    samples = np.frombuffer(pcm, dtype=np.int16)[: MAX_RECOGNISED_SECONDS * SAMPLE_RATE]
    with _decoder_lock:
        if _decoder is None:
            _decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        silence = np.zeros(SAMPLE_RATE // 4, dtype=np.int16).tobytes()
        _decoder.start_utt()
        _decoder.process_raw(silence + samples.tobytes() + silence, False, True)
        _decoder.end_utt()
        hypothesis = _decoder.hyp()
    return hypothesis.hypstr if hypothesis is not None else ""
