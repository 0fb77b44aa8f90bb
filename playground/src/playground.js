// The playground page: pick an agent, Call (microphone first, then a session from the gateway, then the LiveKit
// room), hear the agent, watch both sides' transcript and each turn's TTFA, Hang up.
import { Room, RoomEvent, Track, createLocalAudioTrack } from 'livekit-client';
import { GatewayError, getSession, getUsage, listAgents, listSessions, startSession } from './gateway_api.js';
import { RECENT_LIMIT, callRow, monthLine, reportView } from './recent_calls.js';
import { TOPIC, FINAL_ATTRIBUTE, SEGMENT_ATTRIBUTE, Transcript, roleOf } from './transcripts.js';
import { TurnTimer } from './turn_timer.js';

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = 'voxfleet.playground.apiKey';

const call = {
  room: null, mic: null, audioContext: null, audioElements: [], timer: null, transcript: null, session: null,
  active: false, agentHeard: false, hintTimer: 0,
};
// For people poking around in the console, and for the browser test.
const levels = { caller: { blocks: 0, max: 0 }, agent: { blocks: 0, max: 0 } }; // "is any audio flowing?"
window.voxfleetPlayground = {
  turns: () => (call.timer ? call.timer.turns : []),
  transcript: () => (call.transcript ? call.transcript.lines : []),
  session: () => call.session,
  levels: () => JSON.parse(JSON.stringify(levels)),
  audioState: () => (call.audioContext ? call.audioContext.state : 'none'),
  recentCalls: () => recent.rows.map((row) => ({ ...row })),
  shownReport: () => recent.shown,
};

// The tenant's recent calls (GET /v1/sessions) and the report of the one clicked (GET /v1/sessions/{id}).
const recent = { rows: [], shown: null, currency: '', refreshTimers: [] };

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

async function refreshRecent() {
  if (!apiKey()) return;
  const hint = $('recent-hint');
  try {
    const usage = await getUsage(apiKey()).catch(() => null); // the month's line is a bonus, never a failure
    if (usage) {
      recent.currency = usage.currency || '';
      $('month-usage').textContent = monthLine(usage);
    }
    const items = await listSessions(apiKey(), RECENT_LIMIT);
    recent.rows = items.map((item) => callRow(item, recent.currency));
    $('recent-calls').replaceChildren(...recent.rows.map((row) => {
      const tr = document.createElement('tr');
      tr.dataset.sessionId = row.sessionId;
      tr.tabIndex = 0;
      tr.append(cell(row.time), cell(row.agent), cell(row.duration), cell(row.endReason), cell(row.ttfa),
        cell(row.cost));
      tr.addEventListener('click', () => showReport(row.sessionId, tr));
      tr.addEventListener('keydown', (event) => { if (event.key === 'Enter') showReport(row.sessionId, tr); });
      return tr;
    }));
    hint.textContent = recent.rows.length ? 'Click a call to see its report.' : 'No calls yet.';
  } catch (error) {
    hint.textContent = `Recent calls are not available: ${error.message}`;
  }
}

function scheduleRecentRefresh() {
  // A call's report reaches the gateway a moment after the call ends: look again shortly, then once more.
  for (const timer of recent.refreshTimers.splice(0)) window.clearTimeout(timer);
  for (const delay of [1500, 6000]) recent.refreshTimers.push(window.setTimeout(refreshRecent, delay));
}

async function showReport(sessionId, row) {
  for (const other of document.querySelectorAll('#recent-calls tr.selected')) other.classList.remove('selected');
  row.classList.add('selected');
  const panel = $('call-report');
  try {
    const view = reportView(await getSession(apiKey(), sessionId));
    recent.shown = view;
    $('call-report-title').textContent = view.title;
    $('call-report-facts').replaceChildren(...view.facts.flatMap(([label, value]) => {
      const dt = document.createElement('dt');
      dt.textContent = label;
      const dd = document.createElement('dd');
      dd.textContent = value;
      return [dt, dd];
    }));
    $('call-report-turns').hidden = !view.turns.length;
    $('call-report-turns').querySelector('tbody').replaceChildren(...view.turns.map((turn) => {
      const tr = document.createElement('tr');
      tr.append(cell(String(turn.index)), cell(turn.ttfa), cell(turn.interrupted), cell(turn.outcome));
      return tr;
    }));
    $('call-report-tools').replaceChildren(...view.toolCalls.map((text) => {
      const li = document.createElement('li');
      li.textContent = text;
      return li;
    }));
    $('call-report-transcript').replaceChildren(...view.transcript.map((text) => {
      const li = document.createElement('li');
      li.textContent = text;
      return li;
    }));
    $('call-report-transcript').hidden = !view.transcript.length;
    panel.hidden = false;
  } catch (error) {
    showMessage(error.message);
  }
}

function countLevel(side, rms) {
  levels[side].blocks += 1;
  levels[side].max = Math.max(levels[side].max, rms);
}

function setStatus(text) {
  $('status').textContent = text;
}

function showMessage(text) {
  const box = $('message');
  box.textContent = text;
  box.hidden = !text;
}

function setInCall(inCall) {
  $('call').disabled = inCall;
  $('hangup').disabled = !inCall;
  $('agent').disabled = inCall;
  $('api-key').disabled = inCall;
}

function apiKey() {
  return $('api-key').value.trim();
}

// The key may arrive in the URL fragment, which browsers never send to a server (voxfleet dev prints such a link).
function initialKey() {
  const fromFragment = new URLSearchParams(window.location.hash.slice(1)).get('key');
  if (fromFragment) {
    sessionStorage.setItem(KEY_STORAGE, fromFragment);
    window.history.replaceState(null, '', window.location.pathname + window.location.search);
  }
  return fromFragment || sessionStorage.getItem(KEY_STORAGE) || '';
}

async function refreshAgents() {
  const select = $('agent');
  const wanted = select.value || new URLSearchParams(window.location.search).get('agent') || '';
  if (!apiKey()) {
    select.replaceChildren(new Option('(enter the API key)', ''));
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, apiKey());
  try {
    const agents = await listAgents(apiKey());
    showMessage('');
    if (!agents.length) {
      select.replaceChildren(new Option('(this tenant has no agents)', ''));
      return;
    }
    select.replaceChildren(...agents.map((agent) => {
      const status = agent.status || {};
      const label = `${agent.name} (${status.readyWorkers || 0} ready workers, ${status.freeSlots || 0} free slots)`;
      return new Option(label, agent.name, false, agent.name === wanted);
    }));
  } catch (error) {
    select.replaceChildren(new Option('(could not list agents)', ''));
    showMessage(error.message);
  }
}

function micErrorMessage(error) {
  const name = (error && error.name) || '';
  if (name === 'NotAllowedError' || name === 'SecurityError' || /permission|denied/i.test(String(error))) {
    return 'The browser blocked the microphone, so the call cannot start. Allow the microphone for this page '
      + '(the icon in the address bar) and press Call again.';
  }
  if (name === 'NotFoundError' || name === 'OverconstrainedError') {
    return 'No microphone was found. Connect one (or pick it in the browser\'s settings) and press Call again.';
  }
  return `The microphone could not be opened (${name || error}). Close other apps using it and try again.`;
}

async function startMeter(track, onLevel) {
  const context = call.audioContext;
  const source = new MediaStreamAudioSourceNode(context, { mediaStream: new MediaStream([track]) });
  const meter = new AudioWorkletNode(context, 'level-meter');
  meter.port.onmessage = (event) => onLevel(event.data.t, event.data.rms);
  // Only nodes that reach the destination are processed; a muted gain keeps the meter silent.
  source.connect(meter).connect(new GainNode(context, { gain: 0 })).connect(context.destination);
}

function addTurn(turn) {
  const item = document.createElement('li');
  item.dataset.ttfaMs = String(turn.ttfaMs);
  item.textContent = `Turn ${turn.index}: ${turn.ttfaMs} ms`;
  $('turns').append(item);
}

function renderLine(line) {
  if (!line.element) {
    line.element = document.createElement('li');
    $('transcript').append(line.element);
  }
  line.element.className = `${line.role}${line.final ? '' : ' interim'}`;
  line.element.textContent = line.text;
  $('transcript-hint').hidden = true;
}

function onTranscriptStream(reader, participantInfo) {
  const attributes = (reader.info && reader.info.attributes) || {};
  const local = call.room.localParticipant;
  const role = roleOf(attributes, participantInfo.identity, local.identity, new Set(local.trackPublications.keys()));
  const segment = attributes[SEGMENT_ATTRIBUTE] || reader.info.id;
  const final = String(attributes[FINAL_ATTRIBUTE] || 'true').toLowerCase() !== 'false';
  (async () => {
    let text = '';
    try {
      for await (const chunk of reader) {
        text += chunk;
        const line = call.transcript.add({ role, text, final: false, segment });
        if (line) renderLine(line);
      }
    } catch {
      return; // an aborted stream is a lost line, not a failed call
    }
    const line = call.transcript.add({ role, text, final, segment });
    if (line) renderLine(line);
  })();
}

async function startCall() {
  const agent = $('agent').value;
  showMessage('');
  if (!apiKey()) return showMessage('Enter the API key first (voxfleet dev prints one).');
  if (!agent) return showMessage('Pick an agent first.');
  setInCall(true);
  call.active = true;
  call.session = null;
  $('transcript').replaceChildren();
  $('transcript-hint').hidden = true;
  $('turns').replaceChildren();
  // Created inside the click, so the browser lets it play.
  call.audioContext = new AudioContext();
  try {
    await call.audioContext.audioWorklet.addModule('level_meter.worklet.js');
    setStatus('Asking for the microphone…');
    try {
      call.mic = await createLocalAudioTrack({ echoCancellation: true, noiseSuppression: true, autoGainControl: true });
    } catch (error) {
      throw new Error(micErrorMessage(error));
    }
    setStatus(`Starting a session with ${agent}…`);
    call.session = await startSession(apiKey(), agent);
    if (!call.active) return; // hung up meanwhile
    await joinRoom(agent);
  } catch (error) {
    showMessage(error instanceof GatewayError || error instanceof Error ? error.message : String(error));
    await endCall(call.session ? 'Call failed.' : 'Idle.');
  }
}

async function joinRoom(agent) {
  const { session } = call;
  call.agentHeard = false;
  call.timer = new TurnTimer({ onTurn: addTurn });
  call.transcript = new Transcript();
  const room = new Room({ adaptiveStream: false, dynacast: false });
  call.room = room;
  room.registerTextStreamHandler(TOPIC, onTranscriptStream);
  room.on(RoomEvent.TrackSubscribed, (track) => {
    if (track.kind !== Track.Kind.Audio) return;
    const element = track.attach();
    element.hidden = true;
    document.body.append(element);
    call.audioElements.push(element);
    startMeter(track.mediaStreamTrack, (t, rms) => {
      call.timer.agent(t, rms);
      countLevel('agent', rms);
      $('agent-level').value = rms;
    });
    call.agentHeard = true;
    setStatus(`In a call with ${agent} (region ${session.region || '?'}). Speak now.`);
  });
  room.on(RoomEvent.ParticipantDisconnected, () => {
    if (call.active && room.remoteParticipants.size === 0) endCall('The agent ended the call.');
  });
  room.on(RoomEvent.Disconnected, () => {
    if (call.active) endCall('Call ended.');
  });
  setStatus(`Joining room ${session.room} in region ${session.region || '?'}…`);
  await room.connect(session.url, session.token);
  await room.localParticipant.publishTrack(call.mic, { source: Track.Source.Microphone });
  startMeter(call.mic.mediaStreamTrack, (t, rms) => {
    call.timer.caller(t, rms);
    countLevel('caller', rms);
    $('caller-level').value = rms;
  });
  if (!call.agentHeard) setStatus(`Waiting for ${agent} to answer (region ${session.region || '?'})…`);
  call.hintTimer = window.setTimeout(() => {
    if (call.active && call.transcript && call.transcript.lines.length === 0) $('transcript-hint').hidden = false;
  }, 15000);
}

async function endCall(statusText) {
  if (!call.active && !call.room) return;
  call.active = false;
  window.clearTimeout(call.hintTimer);
  const { room, mic, audioContext } = call;
  call.room = null;
  call.mic = null;
  call.audioContext = null;
  if (room) await room.disconnect();
  if (mic) mic.stop();
  for (const element of call.audioElements.splice(0)) element.remove();
  if (audioContext) await audioContext.close();
  $('caller-level').value = 0;
  $('agent-level').value = 0;
  setInCall(false);
  setStatus(statusText);
  scheduleRecentRefresh();
}

$('api-key').value = initialKey();
$('api-key').addEventListener('change', () => { refreshAgents(); refreshRecent(); });
$('refresh').addEventListener('click', refreshAgents);
$('recent-refresh').addEventListener('click', refreshRecent);
$('call').addEventListener('click', startCall);
$('hangup').addEventListener('click', () => endCall('You hung up.'));
refreshAgents();
refreshRecent();
