// AudioWorklet: the RMS of each 10 ms block of its input, posted with the block's end time on the
// AudioContext clock (both meters share that clock, so caller and agent times compare directly).
class LevelMeter extends AudioWorkletProcessor {
  constructor() {
    super();
    this.blockFrames = Math.round(sampleRate / 100);
    this.sum = 0;
    this.count = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        this.sum += channel[i] * channel[i];
        if (++this.count === this.blockFrames) {
          this.port.postMessage({ t: currentTime + (i + 1) / sampleRate, rms: Math.sqrt(this.sum / this.count) });
          this.sum = 0;
          this.count = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor('level-meter', LevelMeter);
