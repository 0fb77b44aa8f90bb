"""Live transcripts in a LiveKit room, as LiveKit's own convention carries them (what its JS and Python clients and
LiveKit Agents use): text streams on the topic ``lk.transcription`` with the attributes

- ``lk.transcribed_track_id``: the audio track whose speech the text is (the caller's microphone or the agent's
  voice), which is how a listener tells the two sides apart;
- ``lk.transcription_final``: ``"true"`` for the final text of a segment, ``"false"`` for interim text;
- ``lk.segment_id``: one id per segment, so interim text is replaced by the final one.

The playground's page reads the same streams (playground/src/transcripts.js mirrors this module).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from livekit import rtc

TOPIC = "lk.transcription"
TRACK_ATTRIBUTE = "lk.transcribed_track_id"
FINAL_ATTRIBUTE = "lk.transcription_final"
SEGMENT_ATTRIBUTE = "lk.segment_id"
MAX_LINE_CHARS = 2000  # a participant's stream is input too: a line longer than this is cut
MAX_LINES = 5000

Role = Literal["caller", "agent"]


@dataclass(frozen=True)
class TranscriptLine:
    role: Role
    text: str
    final: bool
    at: float  # time.monotonic() when the text arrived
    segment: str
    sender: str  # identity of the participant that published it


def role_of(attributes: dict[str, str], sender: str, *, own_identity: str, own_track_sids: set[str]) -> Role:
    """Whose speech a transcript is: the transcribed track decides; without it, the sender does."""
    track = attributes.get(TRACK_ATTRIBUTE)
    if track:
        return "caller" if track in own_track_sids else "agent"
    return "caller" if sender == own_identity else "agent"


class RoomTranscripts:
    """Collects every transcript line published in a room (register before connecting)."""

    def __init__(self, room: rtc.Room, *, on_line: Callable[[TranscriptLine], None] | None = None):
        self._room = room
        self._on_line = on_line
        self.lines: list[TranscriptLine] = []
        self._tasks: set[asyncio.Task] = set()
        room.register_text_stream_handler(TOPIC, self._on_stream)

    def _on_stream(self, reader: rtc.TextStreamReader, sender: str) -> None:
        task = asyncio.get_running_loop().create_task(self._read(reader, sender))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, reader: rtc.TextStreamReader, sender: str) -> None:
        try:
            text = await reader.read_all()
        except Exception:  # noqa: BLE001 - an aborted stream is a lost line, not a failed call
            return
        attributes = dict(reader.info.attributes or {})
        local = self._room.local_participant  # streams only arrive while connected
        line = TranscriptLine(
            role=role_of(attributes, sender, own_identity=local.identity, own_track_sids=set(local.track_publications)),
            text=" ".join(text.split())[:MAX_LINE_CHARS],
            final=attributes.get(FINAL_ATTRIBUTE, "true").lower() != "false",
            at=time.monotonic(), segment=attributes.get(SEGMENT_ATTRIBUTE) or reader.info.stream_id, sender=sender)
        if not line.text or len(self.lines) >= MAX_LINES:
            return
        self.lines.append(line)
        if self._on_line is not None:
            self._on_line(line)

    def text(self, role: Role, *, since: float = float("-inf"), until: float = float("inf")) -> str:
        """What one side said between two times: the latest text of each segment, in order of arrival."""
        latest: dict[str, TranscriptLine] = {}
        for line in self.lines:
            if line.role == role and since <= line.at <= until:
                latest.pop(line.segment, None)
                latest[line.segment] = line
        return " ".join(line.text for line in latest.values())

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._room.unregister_text_stream_handler(TOPIC)
