import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Transcript, roleOf } from '../src/transcripts.js';

test('the transcribed track decides whose words they are; without it, the sender does', () => {
  const own = new Set(['TR_mine']);
  assert.equal(roleOf({ 'lk.transcribed_track_id': 'TR_mine' }, 'agent-1', 'me', own), 'caller');
  assert.equal(roleOf({ 'lk.transcribed_track_id': 'TR_agent' }, 'agent-1', 'me', own), 'agent');
  assert.equal(roleOf({}, 'me', 'me', own), 'caller');
  assert.equal(roleOf({}, 'agent-1', 'me', own), 'agent');
});

test('interim text of a segment is replaced by its final text; empty and oversized text is handled', () => {
  const transcript = new Transcript();
  transcript.add({ role: 'caller', text: 'what are', final: false, segment: 's1' });
  transcript.add({ role: 'caller', text: 'what are your  opening hours', final: true, segment: 's1' });
  transcript.add({ role: 'agent', text: '   ', final: true, segment: 's2' });
  transcript.add({ role: 'agent', text: 'x'.repeat(5000), final: true, segment: 's3' });
  assert.deepEqual(transcript.lines.map((l) => [l.role, l.text.length, l.final]),
                   [['caller', 27, true], ['agent', 2000, true]]);
});
