// The local camera, microphone and screen. One MediaStream (`camera`) holds
// the microphone and camera tracks for the whole call, so its id, which the
// other peers see, stays the same when a device is switched.
//
// Events: track ({role: 'audio'|'video'|'screen', track, stream}) whenever
// the track to send changes (null means nothing to send), state ({audio,
// video, screen}) whenever what we send changes.
import { Emitter } from './emitter.js';

const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30, max: 30 } };
const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

// A media error with a message a person can act on.
export class MediaError extends Error {
  constructor(message, cause) {
    super(message);
    this.cause = cause;
  }
}

export function describeMediaError(err, what = 'camera or microphone') {
  if (!window.isSecureContext || !navigator.mediaDevices) {
    return `The browser only allows the ${what} on secure pages: open this page over https:// or on localhost.`;
  }
  switch (err?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return `Permission to use the ${what} was denied. Allow it in the browser's site settings (the icon left of the address) and try again.`;
    case 'NotFoundError':
    case 'OverconstrainedError':
      return `No ${what} found. Plug one in, or join without it.`;
    case 'NotReadableError':
    case 'AbortError':
      return `The ${what} is busy: another application or tab is probably using it. Close it and try again.`;
    default:
      return `Could not start the ${what}: ${err?.message || err}`;
  }
}

export class LocalMedia extends Emitter {
  constructor() {
    super();
    this.camera = new MediaStream();
    // Kept for the whole call like `camera`, so the other peers can tell the
    // screen from the camera by stream id (see peer.js).
    this.screen = new MediaStream();
    this.sharing = false;
    this.audioId = '';
    this.videoId = '';
    this.micOn = true;
  }

  get audioTrack() {
    return this.camera.getAudioTracks()[0] ?? null;
  }

  get videoTrack() {
    return this.camera.getVideoTracks()[0] ?? null;
  }

  get state() {
    return {
      audio: !!this.audioTrack && this.micOn,
      video: !!this.videoTrack,
      screen: this.sharing,
    };
  }

  // Opens the microphone and, unless audioOnly, the camera. A missing camera
  // is not fatal: the call goes on with the microphone alone, and the warning
  // is returned. Anything else throws a MediaError.
  async start({ audioOnly = false } = {}) {
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
      throw new MediaError(describeMediaError(null));
    }
    try {
      await this.#acquire({ audio: true, video: !audioOnly });
    } catch (err) {
      if (audioOnly || err.name !== 'NotFoundError') throw new MediaError(describeMediaError(err), err);
      try {
        await this.#acquire({ audio: true, video: false });
      } catch (err2) {
        throw new MediaError(describeMediaError(err2), err2);
      }
      return describeMediaError(err, 'camera');
    }
    return null;
  }

  async #acquire({ audio, video }) {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: audio && { ...AUDIO, ...(this.audioId && { deviceId: { exact: this.audioId } }) },
      video: video && { ...VIDEO, ...(this.videoId && { deviceId: { exact: this.videoId } }) },
    });
    for (const track of stream.getTracks()) this.#setTrack(track.kind, track);
  }

  #setTrack(kind, track) {
    const old = kind === 'audio' ? this.audioTrack : this.videoTrack;
    if (old === track) return;
    if (old) {
      old.stop();
      this.camera.removeTrack(old);
    }
    if (track) {
      this.camera.addTrack(track);
      if (kind === 'audio') track.enabled = this.micOn;
      // Settings reports the real device, needed when the default was used.
      const id = track.getSettings().deviceId;
      if (id) this[kind === 'audio' ? 'audioId' : 'videoId'] = id;
    }
    this.emit('track', { role: kind, track, stream: this.camera });
    this.emit('state', this.state);
  }

  // Devices for the pickers. Until permission is granted browsers list at
  // most one device per kind, with neither id nor label.
  async devices() {
    const list = navigator.mediaDevices ? await navigator.mediaDevices.enumerateDevices() : [];
    return {
      audio: list.filter((d) => d.kind === 'audioinput'),
      video: list.filter((d) => d.kind === 'videoinput'),
    };
  }

  async useDevice(kind, deviceId) {
    if (kind === 'audio') this.audioId = deviceId;
    else this.videoId = deviceId;
    // Switching the camera while it is off only chooses the next one.
    if (kind === 'video' && !this.videoTrack) return;
    try {
      await this.#acquire({ audio: kind === 'audio', video: kind === 'video' });
    } catch (err) {
      throw new MediaError(describeMediaError(err, kind === 'audio' ? 'microphone' : 'camera'), err);
    }
  }

  // Muting only disables the track: unmuting is instant and needs no prompt.
  setMic(on) {
    this.micOn = on;
    if (this.audioTrack) this.audioTrack.enabled = on;
    this.emit('state', this.state);
  }

  // Turning the camera off stops it (its light goes off) rather than sending
  // black frames; turning it on opens it again.
  async setCamera(on) {
    if (on && !this.videoTrack) {
      try {
        await this.#acquire({ audio: false, video: true });
      } catch (err) {
        throw new MediaError(describeMediaError(err, 'camera'), err);
      }
    } else if (!on && this.videoTrack) {
      this.#setTrack('video', null);
    }
  }

  async startScreen() {
    if (!navigator.mediaDevices?.getDisplayMedia) {
      throw new MediaError('This browser cannot share the screen.');
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
    } catch (err) {
      // Closing the picker is a choice, not an error worth a message.
      if (err.name === 'NotAllowedError') return false;
      throw new MediaError(describeMediaError(err, 'screen capture'), err);
    }
    const track = stream.getVideoTracks()[0];
    // Text stays sharp; the encoder lowers the frame rate instead.
    track.contentHint = 'detail';
    // The browser's own "Stop sharing" bar ends the track.
    track.addEventListener('ended', () => this.stopScreen());
    this.stopScreen();
    this.screen.addTrack(track);
    this.sharing = true;
    this.emit('track', { role: 'screen', track, stream: this.screen });
    this.emit('state', this.state);
    return true;
  }

  stopScreen() {
    if (!this.sharing) return;
    for (const t of this.screen.getTracks()) {
      t.stop();
      this.screen.removeTrack(t);
    }
    this.sharing = false;
    this.emit('track', { role: 'screen', track: null, stream: this.screen });
    this.emit('state', this.state);
  }

  stop() {
    this.stopScreen();
    for (const t of this.camera.getTracks()) {
      t.stop();
      this.camera.removeTrack(t);
    }
  }
}
