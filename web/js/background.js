// The background effect: camera frames in, frames out with the background
// blurred or replaced by an image, as a MediaStreamTrack that the peers get
// through RTCRtpSender.replaceTrack (media.js), so no renegotiation.
//
// Per frame: a 256-pixel-wide copy goes to the segmentation model
// (segmenter.js), which answers with a mask whose alpha is "person"; the
// output canvas gets the mask, then the camera frame kept only where the mask
// is (source-in), then the background behind it (destination-over).
//
// It never queues frames: one frame is processed at a time, and frames the
// camera delivers meanwhile replace each other, so a slow machine sends
// fewer frames per second, never older ones.
import { loadSegmenter } from './segmenter.js';

// Blur radius in pixels of a 720-line frame, scaled with the frame height.
export const BLUR_PX = { light: 8, strong: 24 };
// The background is blurred on a quarter-size copy: a blurred picture loses
// nothing by being small first, and 1/16 of the pixels costs 1/16 the time.
const BLUR_SCALE = 0.25;
// Width of the picture given to the model; the landscape model's input is
// 256x144, so a bigger one would only be scaled down again.
const MODEL_WIDTH = 256;
// Weight of the newest frame in the average frame time.
const AVERAGE_WEIGHT = 0.1;

function canvas2d(width = 1, height = 1) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  return { canvas, g: canvas.getContext('2d') };
}

export class BackgroundEffect {
  constructor() {
    const out = canvas2d();
    this.out = out.canvas;
    this.g = out.g;
    // The model's input, the blurred background and the image background
    // scaled to the frame (drawn once per image and frame size).
    this.small = canvas2d();
    this.blur = canvas2d();
    this.picture = canvas2d();
    this.pictureKey = null;
    // captureStream(0): a frame goes out only when requestFrame() says one
    // is drawn, so the track's rate is the rate we keep up with.
    this.track = this.out.captureStream(0).getVideoTracks()[0];
    this.track.contentHint = 'motion';
    this.background = { kind: 'blur', level: 'light' };
    this.input = null;
    this.gen = 0;
    this.reader = null;
    this.ready = false;
    this.stopped = false;
    this.onError = null;
    this.frameMs = 0;
    this.cameraFps = 0;
    this.frameTimes = [];
    this.firstFrame = new Promise((resolve) => {
      this.resolveFirst = resolve;
    });
  }

  // Loads the model and processes `track`; resolves once the first frame is
  // out (or the effect was stopped meanwhile), rejects if the model fails.
  async start(track, background) {
    this.setBackground(background);
    // A device change while the model loads only replaces this.
    this.input = track;
    this.segmenter = await loadSegmenter();
    if (this.stopped) return;
    const input = this.input;
    this.input = null;
    this.setInput(input);
    await this.firstFrame;
  }

  // background: {kind: 'blur', level: 'light'|'strong'} or {kind: 'image',
  // id, image} where image is anything drawImage takes (an ImageBitmap).
  setBackground(background) {
    this.background = background;
  }

  // Switches to another camera track (a device change) without a new output
  // track: the peers notice nothing.
  setInput(track) {
    if (this.stopped) return;
    if (!this.segmenter) {
      this.input = track;
      return;
    }
    if (track === this.input) return;
    this.input = track;
    this.gen += 1;
    this.reader?.cancel().catch(() => {});
    this.reader = null;
    this.cameraFps = track?.getSettings().frameRate ?? 0;
    if (!track) return;
    const pump = 'MediaStreamTrackProcessor' in window ? this.#pumpFrames(track, this.gen) : this.#pumpVideo(track, this.gen);
    pump.catch((err) => this.#fail(err));
  }

  stop() {
    if (this.stopped) return;
    this.stopped = true;
    this.gen += 1;
    this.input = null;
    this.reader?.cancel().catch(() => {});
    this.reader = null;
    this.track.stop();
    this.resolveFirst();
  }

  // Chromium: VideoFrames straight from the track. maxBufferSize 1 keeps
  // only the newest frame while one is processed. Not throttled in a
  // background tab, unlike anything driven by rendering or timers.
  async #pumpFrames(track, gen) {
    // eslint-disable-next-line no-undef
    const reader = new MediaStreamTrackProcessor({ track, maxBufferSize: 1 }).readable.getReader();
    this.reader = reader;
    while (gen === this.gen) {
      const { value: frame, done } = await reader.read().catch(() => ({ done: true }));
      if (done) break;
      try {
        if (gen === this.gen) await this.#process(frame, frame.displayWidth, frame.displayHeight, gen);
      } finally {
        frame.close();
      }
    }
  }

  // Other browsers: a <video> playing the track, one frame per frame it
  // presents (a timer where requestVideoFrameCallback is missing).
  async #pumpVideo(track, gen) {
    const video = document.createElement('video');
    video.muted = true;
    video.playsInline = true;
    video.srcObject = new MediaStream([track]);
    await video.play().catch(() => {});
    const next = (fn) =>
      video.requestVideoFrameCallback ? video.requestVideoFrameCallback(fn) : setTimeout(fn, 1000 / (this.cameraFps || 30));
    try {
      while (gen === this.gen && track.readyState === 'live') {
        await new Promise((resolve) => next(resolve));
        if (gen === this.gen && video.videoWidth) await this.#process(video, video.videoWidth, video.videoHeight, gen);
      }
    } finally {
      video.srcObject = null;
    }
  }

  async #process(source, width, height, gen) {
    const started = performance.now();
    this.#resize(width, height);
    const small = this.small;
    small.g.drawImage(source, 0, 0, small.canvas.width, small.canvas.height);
    let drawn = false;
    await this.segmenter.segment(small.canvas, (mask) => {
      // The frame may have been superseded while the model ran.
      if (gen !== this.gen) return;
      this.#composite(source, mask);
      drawn = true;
    });
    if (!drawn) return;
    this.track.requestFrame();
    this.#count(performance.now() - started);
    if (!this.ready) {
      this.ready = true;
      this.resolveFirst();
    }
  }

  #resize(width, height) {
    if (this.out.width === width && this.out.height === height) return;
    this.out.width = width;
    this.out.height = height;
    this.small.canvas.width = MODEL_WIDTH;
    this.small.canvas.height = Math.max(1, Math.round((MODEL_WIDTH * height) / width));
    this.blur.canvas.width = Math.max(1, Math.round(width * BLUR_SCALE));
    this.blur.canvas.height = Math.max(1, Math.round(height * BLUR_SCALE));
    this.pictureKey = null;
  }

  #composite(source, mask) {
    const g = this.g;
    const { width, height } = this.out;
    g.save();
    g.globalCompositeOperation = 'copy';
    // Scaling the small mask up smooths its edges: the hair and shoulders
    // blend instead of showing the model's 256-pixel grid.
    g.imageSmoothingQuality = 'high';
    g.drawImage(mask, 0, 0, width, height);
    g.globalCompositeOperation = 'source-in';
    g.drawImage(source, 0, 0, width, height);
    g.globalCompositeOperation = 'destination-over';
    g.drawImage(this.#backgroundFor(source), 0, 0, width, height);
    g.restore();
  }

  #backgroundFor(source) {
    const bg = this.background;
    if (bg.kind === 'image' && bg.image) {
      this.#drawPicture(bg);
      return this.picture.canvas;
    }
    const { canvas, g } = this.blur;
    const radius = (BLUR_PX[bg.level] ?? BLUR_PX.light) * (this.out.height / 720) * BLUR_SCALE;
    g.filter = 'none';
    g.drawImage(source, 0, 0, canvas.width, canvas.height);
    // Blurring the copy onto itself keeps the edges opaque: a blur of the
    // frame alone fades to transparent (black once encoded) at the borders.
    g.filter = `blur(${radius.toFixed(1)}px)`;
    g.drawImage(canvas, 0, 0);
    return canvas;
  }

  // The image scaled to cover the frame (cropped, never stretched), redrawn
  // only when the image or the frame size changes.
  #drawPicture(bg) {
    const { width, height } = this.out;
    const key = `${bg.id}:${width}x${height}`;
    if (this.pictureKey === key) return;
    const { canvas, g } = this.picture;
    canvas.width = width;
    canvas.height = height;
    const iw = bg.image.width;
    const ih = bg.image.height;
    const scale = Math.max(width / iw, height / ih);
    const w = iw * scale;
    const h = ih * scale;
    g.drawImage(bg.image, (width - w) / 2, (height - h) / 2, w, h);
    this.pictureKey = key;
  }

  // For the stats panel: average milliseconds per frame (model and
  // drawing), frames out in the last second, and the camera's frame rate.
  get stats() {
    const now = performance.now();
    while (this.frameTimes.length && this.frameTimes[0] < now - 1000) this.frameTimes.shift();
    return { frameMs: this.frameMs, fps: this.frameTimes.length, cameraFps: this.cameraFps };
  }

  #count(ms) {
    this.frameMs = this.frameMs ? this.frameMs + AVERAGE_WEIGHT * (ms - this.frameMs) : ms;
    this.frameTimes.push(performance.now());
    if (this.frameTimes.length > 240) this.frameTimes.shift();
  }

  #fail(err) {
    if (this.stopped) return;
    console.warn('background effect:', err);
    this.onError?.(err);
  }
}
