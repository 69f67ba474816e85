// Speaking indicators: an AnalyserNode per audio stream, sampled a few times
// a second. A level must stay above the threshold briefly to turn the
// indicator on, and below it for longer to turn it off, so it does not
// flicker between words.
const SAMPLE_MS = 120;
const THRESHOLD = 0.02; // RMS of the waveform, 0..1
const HOLD_MS = 600;

export class SpeakingDetector {
  constructor(onChange) {
    this.onChange = onChange;
    this.ctx = null;
    this.watched = new Map();
    this.timer = 0;
  }

  // Starts watching `stream` under `key`; replaces an earlier stream.
  watch(key, stream) {
    const current = this.watched.get(key);
    if (current?.stream === stream && current.trackId === stream.getAudioTracks()[0]?.id) return;
    this.unwatch(key);
    if (!stream.getAudioTracks().length) return;
    // Created on first use, which follows the Join click: browsers only let
    // an AudioContext run after a user gesture.
    this.ctx ??= new AudioContext();
    if (this.ctx.state === 'suspended') this.ctx.resume().catch(() => {});
    const source = this.ctx.createMediaStreamSource(stream);
    const analyser = this.ctx.createAnalyser();
    analyser.fftSize = 512;
    source.connect(analyser);
    this.watched.set(key, {
      stream,
      trackId: stream.getAudioTracks()[0].id,
      source,
      analyser,
      buf: new Float32Array(analyser.fftSize),
      speaking: false,
      since: 0,
    });
    this.timer ||= setInterval(() => this.#sample(), SAMPLE_MS);
  }

  unwatch(key) {
    const w = this.watched.get(key);
    if (!w) return;
    w.source.disconnect();
    this.watched.delete(key);
    if (w.speaking) this.onChange(key, false);
  }

  stop() {
    for (const key of [...this.watched.keys()]) this.unwatch(key);
    clearInterval(this.timer);
    this.timer = 0;
  }

  #sample() {
    const now = performance.now();
    for (const [key, w] of this.watched) {
      w.analyser.getFloatTimeDomainData(w.buf);
      let sum = 0;
      for (const v of w.buf) sum += v * v;
      const loud = Math.sqrt(sum / w.buf.length) > THRESHOLD && w.stream.getAudioTracks().some((t) => t.enabled);
      if (loud === w.speaking) {
        w.since = now;
      } else if (now - w.since > (loud ? SAMPLE_MS : HOLD_MS)) {
        w.speaking = loud;
        w.since = now;
        this.onChange(key, loud);
      }
    }
  }
}
