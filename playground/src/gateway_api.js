// The gateway's tenant API as the page uses it (same origin: the gateway serves this page). Every refusal
// becomes a GatewayError whose message tells the person what happened and what to do.

export class GatewayError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

const HINTS = {
  401: 'The API key was refused. Paste the key `voxfleet dev` printed (or create one: voxfleet keys create --tenant <tenant>).',
  403: 'This tenant may not do that (a region or quota limit).',
  404: 'The gateway has no such agent for this key\'s tenant.',
  429: 'The gateway is rate-limiting this tenant; wait a moment and try again.',
};

// 503s that mean "no free worker"; other codes (no database, say) are explained by the gateway's own message.
const CAPACITY_CODES = new Set(['no_capacity', 'livekit_unavailable']);
const OWN_MESSAGE_CODES = new Set(['monthly_limit_reached', 'database_not_configured', 'usage_unavailable']);

async function request(method, path, apiKey, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { Authorization: `Bearer ${apiKey}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (error) {
    throw new GatewayError(0, 'unreachable', `Cannot reach the gateway (${error.message}). Is voxfleet dev running?`);
  }
  let payload = {};
  try {
    payload = await response.json();
  } catch {
    payload = {};
  }
  if (!response.ok) {
    const retryAfter = response.headers.get('Retry-After');
    const code = payload.code || 'error';
    let message;
    if (response.status === 503 && (!payload.code || CAPACITY_CODES.has(payload.code))) {
      message = 'No capacity: no warm worker of this agent has a free slot right now'
        + (retryAfter ? `; try again in ${retryAfter} s.` : '; try again shortly.');
    } else if (payload.message && OWN_MESSAGE_CODES.has(code)) {
      message = payload.message; // it says which limit or what is missing, and when it resets
    } else {
      message = HINTS[response.status] || `The gateway answered ${response.status}.`;
    }
    if (payload.message && response.status !== 503 && !OWN_MESSAGE_CODES.has(code)) message += ` (${payload.message})`;
    throw new GatewayError(response.status, code, message, retryAfter);
  }
  return payload;
}

export async function listAgents(apiKey) {
  const body = await request('GET', '/v1/agents', apiKey);
  return body.items || [];
}

export async function startSession(apiKey, agent) {
  const body = await request('POST', `/v1/agents/${encodeURIComponent(agent)}/sessions`, apiKey, {});
  const url = body.livekitUrl || body.url;
  if (!url || !body.token || !body.room) {
    throw new GatewayError(200, 'bad_answer', 'The sessions API answered without a room, URL or token.');
  }
  return { sessionId: body.sessionId || body.id || '', room: body.room, url, token: body.token,
           region: body.region || '' };
}

// The tenant's recent calls, newest first (GET /v1/sessions: live and ended, without their reports).
export async function listSessions(apiKey, limit) {
  const body = await request('GET', `/v1/sessions?limit=${encodeURIComponent(limit)}`, apiKey);
  return body.items || [];
}

// One call with its report once it ended (and its transcript when the agent records transcripts).
export async function getSession(apiKey, sessionId) {
  return request('GET', `/v1/sessions/${encodeURIComponent(sessionId)}`, apiKey);
}

// The current month's usage and limits (GET /v1/usage with its default period).
export async function getUsage(apiKey) {
  return request('GET', '/v1/usage', apiKey);
}
