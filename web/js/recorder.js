// Local recording of the call view: the visible tiles are painted onto a
// canvas, every audio stream is mixed with Web Audio, and MediaRecorder
// encodes both into a WebM file that the browser downloads. Nothing leaves
// this machine.
const WIDTH = 1280;
const HEIGHT = 720;
const FPS = 25;
const GAP = 8;

function pickMimeType() {
  const candidates = ['video/webm;codecs=vp9,opus', 'video/webm;codecs=vp8,opus', 'video/webm', 'video/mp4'];
  return candidates.find((t) => MediaRecorder.isTypeSupported(t)) ?? '';
}

export class CallRecorder {
  constructor(gridRoot) {
    this.gridRoot = gridRoot;
    this.recorder = null;
  }

  get recording() {
    return this.recorder?.state === 'recording';
  }

  // streams: the MediaStreams whose audio goes into the recording.
  start(streams) {
    if (typeof MediaRecorder === 'undefined') throw new Error('This browser cannot record.');
    this.canvas = document.createElement('canvas');
    this.canvas.width = WIDTH;
    this.canvas.height = HEIGHT;
    this.g = this.canvas.getContext('2d');
    this.audio = new AudioContext();
    this.mix = this.audio.createMediaStreamDestination();
    this.sources = new Map();
    for (const s of streams) this.addAudio(s);
    const out = new MediaStream([...this.canvas.captureStream(FPS).getVideoTracks(), ...this.mix.stream.getAudioTracks()]);
    const mimeType = pickMimeType();
    this.recorder = new MediaRecorder(out, mimeType ? { mimeType } : undefined);
    this.chunks = [];
    this.recorder.ondataavailable = (e) => e.data.size && this.chunks.push(e.data);
    this.recorder.start(1000);
    this.startedAt = Date.now();
    // A timer rather than requestAnimationFrame: rAF stops in background
    // tabs, which would freeze the recording while you look at another tab.
    this.timer = setInterval(() => this.#paint(), 1000 / FPS);
  }

  // Adds a stream that appears during the recording (a peer joining).
  addAudio(stream) {
    if (!this.sources || this.sources.has(stream.id) || !stream.getAudioTracks().length) return;
    const src = this.audio.createMediaStreamSource(stream);
    src.connect(this.mix);
    this.sources.set(stream.id, src);
  }

  // Stops and resolves with the recording as a Blob.
  stop() {
    return new Promise((resolve) => {
      const rec = this.recorder;
      clearInterval(this.timer);
      rec.onstop = () => {
        const blob = new Blob(this.chunks, { type: rec.mimeType || 'video/webm' });
        for (const t of rec.stream.getTracks()) t.stop();
        this.audio.close();
        this.recorder = null;
        this.sources = null;
        resolve(blob);
      };
      rec.stop();
    });
  }

  #paint() {
    const g = this.g;
    g.fillStyle = '#0f1115';
    g.fillRect(0, 0, WIDTH, HEIGHT);
    const tiles = [...this.gridRoot.querySelectorAll('.tile')];
    if (!tiles.length) return;
    const cols = Math.ceil(Math.sqrt(tiles.length));
    const rows = Math.ceil(tiles.length / cols);
    const w = (WIDTH - GAP * (cols + 1)) / cols;
    const h = (HEIGHT - GAP * (rows + 1)) / rows;
    tiles.forEach((tile, i) => {
      const x = GAP + (i % cols) * (w + GAP);
      const y = GAP + Math.floor(i / cols) * (h + GAP);
      this.#paintTile(tile, x, y, w, h);
    });
  }

  #paintTile(tile, x, y, w, h) {
    const g = this.g;
    g.fillStyle = '#1b1f27';
    g.fillRect(x, y, w, h);
    const video = tile.querySelector('video');
    if (!tile.classList.contains('no-video') && video?.videoWidth) {
      // Fit inside the cell without distortion (letterboxed).
      const scale = Math.min(w / video.videoWidth, h / video.videoHeight);
      const vw = video.videoWidth * scale;
      const vh = video.videoHeight * scale;
      g.drawImage(video, x + (w - vw) / 2, y + (h - vh) / 2, vw, vh);
    }
    const name = tile.querySelector('.tile-name')?.textContent ?? '';
    g.font = '600 18px system-ui, sans-serif';
    const tw = g.measureText(name).width;
    g.fillStyle = 'rgba(0,0,0,0.55)';
    g.fillRect(x + 8, y + h - 36, tw + 16, 28);
    g.fillStyle = '#fff';
    g.fillText(name, x + 16, y + h - 16);
  }
}
