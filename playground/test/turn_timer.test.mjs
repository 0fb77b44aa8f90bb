import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TurnTimer } from '../src/turn_timer.js';

// Feed 10 ms blocks: [from, to) voiced for one side, silence for both elsewhere.
function feed(timer, side, from, to, rms = 0.2) {
  for (let t = from; t < to - 1e-9; t += 0.01) timer[side](Number(t.toFixed(3)), rms);
}

test('the greeting is not a turn; each answer after the caller speaks is, timed from the caller\'s last voiced block', () => {
  const timer = new TurnTimer();
  feed(timer, 'agent', 0.5, 2.0); // greeting
  feed(timer, 'caller', 3.0, 4.2); // question
  feed(timer, 'agent', 4.6, 6.0); // answer, 0.41 s after the caller's last block (4.19)
  feed(timer, 'caller', 7.0, 7.5);
  feed(timer, 'agent', 8.3, 9.0);
  assert.deepEqual(timer.turns.map((t) => t.ttfaMs), [410, 810]);
});

test('a pause inside one answer does not start another turn, and a cough is not a question', () => {
  const timer = new TurnTimer();
  feed(timer, 'caller', 1.0, 2.0);
  feed(timer, 'agent', 2.5, 3.0);
  feed(timer, 'agent', 3.2, 4.0); // 0.2 s gap: same answer
  feed(timer, 'caller', 5.0, 5.05); // 50 ms of noise
  feed(timer, 'agent', 6.0, 6.5);
  assert.equal(timer.turns.length, 1);
  assert.equal(timer.turns[0].ttfaMs, 510);
});

test('quiet blocks on either side change nothing', () => {
  const timer = new TurnTimer();
  feed(timer, 'caller', 0, 2, 0.001);
  feed(timer, 'agent', 0, 2, 0.001);
  assert.equal(timer.turns.length, 0);
});
