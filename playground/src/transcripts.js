// Live transcripts the LiveKit way (mirrors voxfleet.devplatform.room_transcripts): text streams on the topic
// "lk.transcription"; "lk.transcribed_track_id" names the audio track whose speech the text is (ours: the
// caller; any other: the agent), "lk.transcription_final" says whether a segment is final, "lk.segment_id"
// groups interim and final text of one segment.

export const TOPIC = 'lk.transcription';
export const TRACK_ATTRIBUTE = 'lk.transcribed_track_id';
export const FINAL_ATTRIBUTE = 'lk.transcription_final';
export const SEGMENT_ATTRIBUTE = 'lk.segment_id';
export const MAX_LINE_CHARS = 2000;
export const MAX_LINES = 500;

export function roleOf(attributes, senderIdentity, ownIdentity, ownTrackSids) {
  const track = attributes[TRACK_ATTRIBUTE];
  if (track) return ownTrackSids.has(track) ? 'caller' : 'agent';
  return senderIdentity === ownIdentity ? 'caller' : 'agent';
}

// One conversation's lines: a segment's later text replaces its earlier (interim) text in place.
export class Transcript {
  constructor() {
    this.lines = [];
    this.bySegment = new Map();
  }

  add({ role, text, final, segment }) {
    const clean = String(text).replace(/\s+/g, ' ').trim().slice(0, MAX_LINE_CHARS);
    if (!clean) return null;
    const existing = segment ? this.bySegment.get(segment) : undefined;
    if (existing) {
      existing.text = clean;
      existing.final = final;
      return existing;
    }
    if (this.lines.length >= MAX_LINES) return null;
    const line = { role, text: clean, final, segment };
    this.lines.push(line);
    if (segment) this.bySegment.set(segment, line);
    return line;
  }
}
