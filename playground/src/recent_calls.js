// The "Recent calls" list and a call's report, as text for the page: pure functions of what the gateway answers
// (GET /v1/sessions items, GET /v1/sessions/{id} report, GET /v1/usage month), so node's test runner checks them.

export const RECENT_LIMIT = 10;
const DASH = '—';

function isNumber(value) {
  return typeof value === 'number' && Number.isFinite(value);
}

// 65,400 ms -> "1:05"; an hour or more -> "1:02:03".
export function formatDuration(ms) {
  if (!isNumber(ms) || ms < 0) return DASH;
  const total = Math.round(ms / 1000);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, '0');
  return hours ? `${hours}:${String(minutes).padStart(2, '0')}:${seconds}` : `${minutes}:${seconds}`;
}

// Integer micro-units (millionths) of the currency -> "0.0123 USD", rounded to 4 places without floats deciding
// the digits (micro-units stay exact below 2^53: 9 billion units of any currency).
export function formatCost(micros, currency) {
  if (!isNumber(micros) || micros < 0) return DASH;
  const tenThousandths = Math.round(micros / 100);
  const whole = Math.floor(tenThousandths / 10000);
  const fraction = String(tenThousandths % 10000).padStart(4, '0');
  return `${whole}.${fraction}${currency ? ` ${currency}` : ''}`;
}

export function formatTtfa(ms) {
  return isNumber(ms) ? `${Math.round(ms)} ms` : DASH;
}

// Today's calls show the time; older ones the date too (in the browser's time zone).
export function formatStart(iso, now = new Date()) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return DASH;
  const time = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return when.toDateString() === now.toDateString() ? time : `${when.toLocaleDateString()} ${time}`;
}

// One row of the list from one GET /v1/sessions item.
export function callRow(item, currency = '', now = new Date()) {
  const live = item.status === 'live';
  return {
    sessionId: String(item.sessionId || ''),
    live,
    time: formatStart(item.startedAt, now),
    agent: String(item.agent || DASH),
    duration: live ? 'live' : formatDuration(item.durationMs),
    endReason: live ? DASH : String(item.endReason || DASH),
    ttfa: formatTtfa(item.ttfaMedianMs),
    cost: live ? DASH : formatCost(item.costMicros, currency),
  };
}

// A call's report as labelled lines and a turns table, for the panel shown when a row is clicked.
export function reportView(session) {
  const report = session.report || null;
  if (!report) {
    return { title: `Call ${session.sessionId || ''}`, facts: [['Status', session.status === 'live'
      ? 'live: the report comes when the call ends' : 'ended: no report (yet)']], turns: [], toolCalls: [],
    transcript: [] };
  }
  const usage = report.usage || {};
  const facts = [
    ['Agent', report.agent],
    ['Region / worker', `${report.region || DASH} / ${report.worker || DASH}`],
    ['Started', report.startedAt],
    ['Duration', formatDuration(report.durationMs)],
    ['End reason', report.endReason],
    ['Interruptions', `${report.interruptions ?? 0} (${report.falseInterruptions ?? 0} false)`],
    ['Usage', `STT ${formatDuration(usage.sttMs)}, LLM ${usage.llmPromptTokens ?? 0} + ${usage.llmCompletionTokens ?? 0}`
      + ` tokens, TTS ${usage.ttsCharacters ?? 0} characters`],
    ['Cost', formatCost(report.costMicros, report.currency)],
  ];
  for (const recovery of report.recoveries || []) {
    facts.push(['Recovery', `${recovery.outcome} at ${recovery.at} (${recovery.fromWorker || '?'} -> ${recovery.toWorker || '?'})`]);
  }
  if (report.truncated) facts.push(['Note', 'the report reached a bound: later items were dropped']);
  return {
    title: `Call ${report.sessionId}`,
    facts: facts.map(([label, value]) => [label, value === undefined || value === null ? DASH : String(value)]),
    turns: (report.turns || []).map((turn) => ({
      index: turn.index, ttfa: formatTtfa(turn.ttfaMs), interrupted: turn.interrupted ? 'yes' : 'no',
      outcome: turn.outcome || DASH,
    })),
    toolCalls: (report.toolCalls || []).map((call) => `${call.name}: ${call.status}`
      + (isNumber(call.latencyMs) ? ` (${call.latencyMs} ms)` : '')),
    transcript: (session.transcript || report.transcript || []).map((line) => `${line.role}: ${line.text}`),
  };
}

// The month against the tenant's limits, from GET /v1/usage, as one line.
export function monthLine(usageReport) {
  const month = usageReport && usageReport.month;
  if (!month) return '';
  const totals = month.totals || {};
  const calls = totals.sessions ?? 0;
  const parts = [`This month: ${calls} call${calls === 1 ? '' : 's'}, ${totals.minutes ?? 0} min,`
    + ` ${formatCost(totals.costMicros, usageReport.currency)}`];
  for (const limit of month.limits || []) {
    if (limit.limit === null || limit.limit === undefined) continue;
    const unit = limit.field.endsWith('Minutes') ? 'min' : 'cents';
    parts.push(`${limit.field} ${limit.used} of ${limit.limit} ${unit}${limit.reached ? ' (reached)' : ''}`);
  }
  return parts.join('; ');
}
