// The lobby: room and name (pre-filled from a shared link), a camera preview
// with device pickers, and the clear error messages of getUserMedia.
import { $, toast } from './dom.js';
import { refreshDevicePickers } from './devices.js';

const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const NAME_KEY = 'natbridge.name';

// The room named by a shared link: /r/NAME or ?room=NAME.
export function roomFromUrl() {
  const m = location.pathname.match(/^\/r\/([^/]+)\/?$/);
  let room = m ? m[1] : new URLSearchParams(location.search).get('room');
  try {
    room = room ? decodeURIComponent(room) : '';
  } catch {
    room = '';
  }
  return ROOM_RE.test(room) ? room : '';
}

export function roomLink(room) {
  return `${location.origin}/r/${encodeURIComponent(room)}`;
}

function joinErrorText(err, limits) {
  switch (err.code) {
    case 'room_full':
      return `This room is full${limits?.roomCapacity ? ` (${limits.roomCapacity} people)` : ''}. Try again later or pick another room.`;
    case 'room_invalid':
      return 'Room names are 1 to 64 letters, digits, "_", "-" or ".".';
    case 'name_invalid':
      return 'That display name is not allowed: use at most 64 characters.';
    case 'token_required':
    case 'token_invalid':
    case 'token_expired':
    case 'token_room_mismatch':
      return 'This server only admits invited people to this room.';
    case 'draining':
      return 'The server is restarting. Try again in a moment.';
    default:
      return err.message || 'Could not join the call.';
  }
}

export class Lobby {
  constructor({ media, onJoin }) {
    this.media = media;
    this.onJoin = onJoin;
    this.started = false;
    this.root = $('#lobby');
    this.form = $('#join-form');
    this.room = $('#room');
    this.name = $('#name');
    this.audioOnly = $('#audio-only');
    this.error = $('#lobby-error');
    this.joinBtn = $('#join-btn');
    this.joinAnyway = $('#join-anyway');
    this.preview = $('#preview');

    this.room.value = roomFromUrl();
    this.name.value = localStorage.getItem(NAME_KEY) || '';
    if (!window.isSecureContext || !navigator.mediaDevices) $('#insecure').hidden = false;

    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.#submit(true);
    });
    this.joinAnyway.addEventListener('click', () => this.#submit(false));
    $('#preview-btn').addEventListener('click', () => this.#startMedia());
    this.audioOnly.addEventListener('change', () => this.#onAudioOnly());
    media.on('track', () => this.#renderPreview());
    this.#autoPreview();
    (this.room.value ? this.name : this.room).focus();
  }

  show(message) {
    this.root.hidden = false;
    this.joinBtn.disabled = false;
    this.joinBtn.textContent = 'Join';
    this.started = this.media.camera.getTracks().length > 0;
    this.#renderPreview();
    if (message) this.#showError(message);
    this.joinBtn.focus();
  }

  hide() {
    this.root.hidden = true;
    // A hidden video element would still decode the camera.
    this.preview.srcObject = null;
  }

  // With the permission already granted, the preview starts without a click.
  async #autoPreview() {
    try {
      const cam = await navigator.permissions?.query({ name: 'camera' });
      if (cam?.state === 'granted' && !this.audioOnly.checked) await this.#startMedia();
    } catch {
      // Permissions API without "camera": the button stays.
    }
  }

  // Opens camera and microphone; returns false (after saying why) if not.
  // A click while the automatic preview is still opening waits for that one
  // instead of opening the devices a second time.
  #startMedia() {
    if (this.started) return Promise.resolve(true);
    this.starting ??= this.#openMedia().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  async #openMedia() {
    this.#showError('');
    try {
      const warning = await this.media.start({ audioOnly: this.audioOnly.checked });
      if (warning) toast(warning, 'warn', 8000);
      this.started = true;
      await refreshDevicePickers(this.media);
      return true;
    } catch (err) {
      this.#showError(err.message);
      this.joinAnyway.hidden = false;
      return false;
    } finally {
      this.#renderPreview();
    }
  }

  async #onAudioOnly() {
    if (!this.started) return;
    try {
      await this.media.setCamera(!this.audioOnly.checked);
    } catch (err) {
      this.#showError(err.message);
    }
  }

  #renderPreview() {
    if (this.root.hidden) return;
    const hasVideo = !!this.media.videoTrack;
    this.preview.srcObject = hasVideo ? this.media.camera : null;
    $('#preview-off').hidden = hasVideo;
    $('#preview-btn').hidden = this.started;
    $('#preview-text').textContent = this.started
      ? this.media.audioTrack ? 'Audio only: your camera stays off' : 'No camera or microphone'
      : 'Camera preview is off';
  }

  #showError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  async #submit(withMedia) {
    const room = this.room.value.trim();
    if (!ROOM_RE.test(room)) {
      this.#showError('Enter a room name: 1 to 64 letters, digits, "_", "-" or ".".');
      this.room.focus();
      return;
    }
    const name = this.name.value.trim();
    localStorage.setItem(NAME_KEY, name);
    if (withMedia && window.isSecureContext && navigator.mediaDevices && !(await this.#startMedia())) return;
    this.#showError('');
    this.joinAnyway.hidden = true;
    this.joinBtn.disabled = true;
    this.joinBtn.textContent = 'Joining…';
    try {
      await this.onJoin({ room, name, relayOnly: $('#relay-only').checked });
    } catch (err) {
      this.#showError(joinErrorText(err, err.limits));
      this.joinBtn.disabled = false;
      this.joinBtn.textContent = 'Join';
    }
  }
}
