// The local camera, microphone and screen. One MediaStream (`camera`) holds
// the microphone and camera tracks for the whole call, so its id, which the
// other peers see, stays the same when a device is switched.
//
// The camera's video may go through a background effect (background.js):
// `camera` then carries the effect's output instead of the device's track,
// so the self view, the recorder and every peer, also one joining later,
// get the processed video; the device track stays in `deviceVideo`.
//
// Events: track ({role: 'audio'|'video'|'screen', track, stream}) whenever
// the track to send changes (null means nothing to send), state ({audio,
// video, screen}) whenever what we send changes, effect ({state:
// 'off'|'loading'|'on'|'failed', message}) whenever the background effect
// starts, stops or fails.
import { Emitter } from './emitter.js';
import { BackgroundEffect } from './background.js';

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
    // The camera track as the device gives it.
    this.deviceVideo = null;
    // {kind: 'none'} or what BackgroundEffect.setBackground takes.
    this.background = { kind: 'none' };
    this.effect = null;
    this.effectState = { state: 'off', message: '' };
  }

  get audioTrack() {
    return this.camera.getAudioTracks()[0] ?? null;
  }

  // The video we show and send: the camera's, or the effect's made from it.
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
    if (kind === 'video') {
      this.#setDeviceVideo(track);
      return;
    }
    const old = this.audioTrack;
    if (old === track) return;
    if (old) {
      old.stop();
      this.camera.removeTrack(old);
    }
    if (track) {
      this.camera.addTrack(track);
      track.enabled = this.micOn;
      // Settings reports the real device, needed when the default was used.
      const id = track.getSettings().deviceId;
      if (id) this.audioId = id;
    }
    this.emit('track', { role: kind, track, stream: this.camera });
    this.emit('state', this.state);
  }

  #setDeviceVideo(track) {
    const old = this.deviceVideo;
    if (old === track) return;
    this.deviceVideo = track;
    if (track) {
      const id = track.getSettings().deviceId;
      if (id) this.videoId = id;
    }
    // The effect moves to the new track before the old one stops.
    this.#syncEffect();
    old?.stop();
  }

  // Sets the background: {kind: 'none'}, {kind: 'blur', level: 'light' |
  // 'strong'} or {kind: 'image', id, image}. Kept while the camera is off
  // and applied when it comes on. If the model cannot load, the effect state
  // says why and the camera goes out unprocessed.
  setBackground(background) {
    this.background = background;
    this.#syncEffect();
  }

  // Starts, updates or stops the effect to match the background and the
  // camera, then puts the right track in `camera`.
  #syncEffect() {
    const wanted = this.background.kind !== 'none' && !!this.deviceVideo;
    if (!wanted) {
      const effect = this.effect;
      this.effect = null;
      // The camera track goes back to the peers before the effect's track
      // ends, so they never see an ended track.
      this.#publishVideo();
      if (effect) {
        effect.stop();
        this.#setEffectState('off');
      }
      return;
    }
    if (this.effect) {
      this.effect.setBackground(this.background);
      this.effect.setInput(this.deviceVideo);
      this.#publishVideo();
      return;
    }
    const effect = new BackgroundEffect();
    this.effect = effect;
    effect.onError = (err) => this.#effectFailed(effect, err);
    this.#setEffectState('loading');
    // Until its first frame the camera goes out as it is.
    this.#publishVideo();
    effect.start(this.deviceVideo, this.background).then(
      () => {
        if (this.effect !== effect) return;
        this.#publishVideo();
        this.#setEffectState('on');
      },
      (err) => this.#effectFailed(effect, err),
    );
  }

  #effectFailed(effect, err) {
    effect.stop();
    if (this.effect !== effect) return;
    this.effect = null;
    this.background = { kind: 'none' };
    this.#publishVideo();
    this.#setEffectState('failed', `Backgrounds are unavailable: ${err?.message || err}. The camera goes out as it is.`);
  }

  #setEffectState(state, message = '') {
    this.effectState = { state, message };
    this.emit('effect', this.effectState);
  }

  // Puts the track to send in `camera`: the effect's once it has a frame,
  // else the device's. Peers swap it with replaceTrack (peer.js).
  #publishVideo() {
    const want = this.effect?.ready ? this.effect.track : this.deviceVideo;
    const current = this.videoTrack;
    if (current === want) return;
    // Not stopped here: the device track is stopped when the device goes,
    // the effect's track when the effect does.
    if (current) this.camera.removeTrack(current);
    if (want) this.camera.addTrack(want);
    this.emit('track', { role: 'video', track: want, stream: this.camera });
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
    if (kind === 'video' && !this.deviceVideo) return;
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
    if (on && !this.deviceVideo) {
      try {
        await this.#acquire({ audio: false, video: true });
      } catch (err) {
        throw new MediaError(describeMediaError(err, 'camera'), err);
      }
    } else if (!on && this.deviceVideo) {
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
    this.#setDeviceVideo(null);
    for (const t of this.camera.getTracks()) {
      t.stop();
      this.camera.removeTrack(t);
    }
  }
}
