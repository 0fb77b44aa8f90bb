import assert from 'node:assert/strict';
import { test } from 'node:test';
import { callRow, formatCost, formatDuration, monthLine, reportView } from '../src/recent_calls.js';

test('durations read as minutes:seconds, hours when a call is that long, a dash when unknown', () => {
  assert.equal(formatDuration(65400), '1:05');
  assert.equal(formatDuration(3723000), '1:02:03');
  assert.equal(formatDuration(0), '0:00');
  assert.equal(formatDuration(null), '—');
  assert.equal(formatDuration(-5), '—');
});

test('costs are integer micro-units shown to 4 places with their currency', () => {
  assert.equal(formatCost(12345, 'USD'), '0.0123 USD');
  assert.equal(formatCost(12350, 'EUR'), '0.0124 EUR'); // half up
  assert.equal(formatCost(2500000, ''), '2.5000');
  assert.equal(formatCost(undefined, 'USD'), '—');
});

test('a list item becomes a row: ended calls with duration, reason, TTFA and cost; live ones say live', () => {
  const now = new Date('2026-12-03T23:59:00Z');
  const ended = callRow({ sessionId: 's1', status: 'ended', startedAt: '2026-12-03T23:40:00Z', agent: 'concierge',
    durationMs: 61000, endReason: 'caller-left', ttfaMedianMs: 812.4, costMicros: 20500 }, 'USD', now);
  assert.deepEqual({ ...ended, time: undefined }, { sessionId: 's1', live: false, time: undefined, agent: 'concierge',
    duration: '1:01', endReason: 'caller-left', ttfa: '812 ms', cost: '0.0205 USD' });
  const live = callRow({ sessionId: 's2', status: 'live', startedAt: '2026-12-03T23:58:00Z', agent: 'concierge' },
    'USD', now);
  assert.equal(live.duration, 'live');
  assert.equal(live.cost, '—');
  assert.equal(live.ttfa, '—');
});

test('a report becomes facts, a turns table, tool calls and the transcript when there is one', () => {
  const view = reportView({ sessionId: 's1', status: 'ended', report: {
    sessionId: 's1', agent: 'concierge', region: 'us-east', worker: 'pod-1', startedAt: '2026-12-03T23:40:00Z',
    durationMs: 30000, endReason: 'caller-left', interruptions: 2, falseInterruptions: 1,
    turns: [{ index: 0, ttfaMs: 640, interrupted: true, outcome: 'answered' }],
    toolCalls: [{ name: 'lookup_order', status: 'ok', latencyMs: 42 }],
    usage: { sttMs: 12000, llmPromptTokens: 300, llmCompletionTokens: 40, ttsCharacters: 120 },
    costMicros: 9000, currency: 'USD', recoveries: [] },
  transcript: [{ role: 'caller', text: 'hello', atMs: 100 }] });
  const facts = Object.fromEntries(view.facts);
  assert.equal(facts.Cost, '0.0090 USD');
  assert.equal(facts.Interruptions, '2 (1 false)');
  assert.deepEqual(view.turns, [{ index: 0, ttfa: '640 ms', interrupted: 'yes', outcome: 'answered' }]);
  assert.deepEqual(view.toolCalls, ['lookup_order: ok (42 ms)']);
  assert.deepEqual(view.transcript, ['caller: hello']);
  const live = reportView({ sessionId: 's2', status: 'live' });
  assert.match(live.facts[0][1], /live/);
});

test('the month line names each limit that is set and whether it is reached', () => {
  const line = monthLine({ currency: 'USD', month: { totals: { sessions: 3, minutes: 2.5, costMicros: 40000 },
    limits: [{ field: 'quotas.monthlyMinutes', limit: 2, used: 2.5, reached: true },
      { field: 'quotas.monthlySpendCents', limit: null, used: 4, reached: false }] } });
  assert.equal(line, 'This month: 3 calls, 2.5 min, 0.0400 USD; quotas.monthlyMinutes 2.5 of 2 min (reached)');
  assert.equal(monthLine(null), '');
});
