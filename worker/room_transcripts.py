"""Live transcripts in the room, the LiveKit way: each side's final text of a turn as a text stream on the topic
``lk.transcription``, its ``lk.transcribed_track_id`` naming the audio track the words were heard on (the
caller's microphone for the caller's turns, our own voice track for the agent's replies), so the playground,
`voxfleet call` and any LiveKit client tell the sides apart (voxfleet.devplatform.room_transcripts reads them).

Only built when the agent's spec turns transcripts on (``observability.recordTranscripts``): with it off, no
text of the call leaves the pipeline. Lines go out in order from one task chain; before the transport leaves the
room it waits (bounded) for the last one, so the final reply's text is not lost when the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import structlog
from livekit import rtc

from voxfleet.api import room_names

log = structlog.get_logger("voxfleet.worker.room_transcripts")

TOPIC = "lk.transcription"
TRACK_ATTRIBUTE = "lk.transcribed_track_id"
FINAL_ATTRIBUTE = "lk.transcription_final"
SEGMENT_ATTRIBUTE = "lk.segment_id"
MAX_CHARS = 2000  # what listeners keep of a line
FLUSH_TIMEOUT_S = 2.0


class RoomTranscriptPublisher:
    def __init__(self, transport, aggregators):
        self._transport = transport
        self._last: asyncio.Task | None = None
        self._nonce = uuid.uuid4().hex[:8]  # segment ids stay unique when a recovered session joins the room
        self._count = 0

        @aggregators.user().event_handler("on_user_turn_stopped")
        async def on_caller_said(_aggregator, _strategy, message):
            self.publish("caller", message.content)

        @aggregators.assistant().event_handler("on_assistant_turn_stopped")
        async def on_agent_said(_aggregator, message):
            self.publish("agent", message.content)

        @transport.event_handler("on_before_disconnect")
        async def flush(_transport):
            await self.flush()

    def publish(self, role: str, text: str | None) -> None:
        text = " ".join((text or "").split())[:MAX_CHARS]
        if not text:
            return
        self._count += 1
        segment = f"SG_{self._nonce}_{self._count}"
        self._last = asyncio.get_running_loop().create_task(self._send(self._last, role, text, segment))

    async def flush(self) -> None:
        if self._last is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._last), FLUSH_TIMEOUT_S)

    async def _send(self, previous: asyncio.Task | None, role: str, text: str, segment: str) -> None:
        if previous is not None:  # keep the room's order of lines
            with contextlib.suppress(BaseException):
                await previous
        try:
            room: rtc.Room = self._transport._client.room
            track = self._caller_track(room) if role == "caller" else _audio_track_sid(room.local_participant)
            attributes = {FINAL_ATTRIBUTE: "true", SEGMENT_ATTRIBUTE: segment}
            if track:
                attributes[TRACK_ATTRIBUTE] = track
            # Uncompressed: a line is short, and every client (old ones too) reads plain text streams.
            await room.local_participant.send_text(text, topic=TOPIC, attributes=attributes, compress=False)
        except Exception as error:  # noqa: BLE001 - a lost line must not end the call
            log.warning("transcript not published", role=role, error=str(error)[:200])

    @staticmethod
    def _caller_track(room: rtc.Room) -> str | None:
        for participant in room.remote_participants.values():
            if not room_names.is_agent_identity(participant.identity):
                sid = _audio_track_sid(participant)
                if sid:
                    return sid
        return None


def _audio_track_sid(participant: rtc.Participant) -> str | None:
    for sid, publication in participant.track_publications.items():
        if publication.kind == rtc.TrackKind.KIND_AUDIO:
            return sid
    return None
