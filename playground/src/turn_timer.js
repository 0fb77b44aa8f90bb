// TTFA per turn, measured in the page from audio levels, as the caller experiences it: from the end of the
// caller's speech (the last voiced block of the microphone) to the agent's first voiced block heard after it.
// Pure: it is fed 10 ms levels with times on one clock (the AudioContext's) and reports turns.

export const VOICED_RMS = 0.01; // float RMS (int16 ~330): speech is far above, Opus silence and room noise below
export const MIN_CALLER_SPEECH_S = 0.15; // less voiced audio than this is a noise, not a turn
export const AGENT_GAP_S = 0.4; // the agent quiet this long, then voiced again, starts a new answer

export class TurnTimer {
  constructor({ onTurn = () => {}, voicedRms = VOICED_RMS } = {}) {
    this.onTurn = onTurn;
    this.voicedRms = voicedRms;
    this.turns = [];
    this.callerVoicedSince = 0; // voiced seconds of the caller since the agent last started answering
    this.callerLastVoiced = null;
    this.agentLastVoiced = null;
  }

  caller(t, rms, blockS = 0.01) {
    if (rms < this.voicedRms) return;
    this.callerVoicedSince += blockS;
    this.callerLastVoiced = t;
  }

  agent(t, rms) {
    if (rms < this.voicedRms) return;
    const startsAnswer = this.agentLastVoiced === null || t - this.agentLastVoiced >= AGENT_GAP_S;
    this.agentLastVoiced = t;
    if (!startsAnswer) return;
    // A greeting (nobody asked anything yet) or a pause inside one answer is not a turn.
    if (this.callerVoicedSince >= MIN_CALLER_SPEECH_S && this.callerLastVoiced !== null && this.callerLastVoiced < t) {
      const turn = { index: this.turns.length + 1, callerEnded: this.callerLastVoiced, agentStarted: t,
                     ttfaMs: Math.round((t - this.callerLastVoiced) * 1000) };
      this.turns.push(turn);
      this.onTurn(turn);
    }
    this.callerVoicedSince = 0;
  }
}

export function rmsOf(samples) {
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return samples.length ? Math.sqrt(sum / samples.length) : 0;
}
