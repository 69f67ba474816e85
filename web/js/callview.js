// The call screen's content: keeps the video grid, the chat timeline, the
// stats panel and the speaking indicators in step with the call's events.
import { $, toast } from './dom.js';
import { Grid } from './tiles.js';
import { SpeakingDetector } from './speaking.js';
import { StatsPanel } from './statspanel.js';
import { ChatPanel } from './chat.js';
import { routeLabel } from './stats.js';

const STATS_EVERY_MS = 1000;
const CONNECTION_TEXT = {
  new: 'Connecting…',
  connecting: 'Connecting…',
  disconnected: 'Reconnecting…',
  failed: 'Connection failed, retrying…',
};

export class CallView {
  constructor({ call, media, onUnread }) {
    this.call = call;
    this.media = media;
    this.onUnread = onUnread;
    this.grid = new Grid($('#grid'));
    this.speaking = new SpeakingDetector((key, on) => this.grid.get(key)?.setSpeaking(on));
    this.stats = new StatsPanel($('#panel-stats'));
    // Camera streams of the others, for the recorder's audio mix.
    this.remoteStreams = new Map();
    // Received files and chat lines, kept for the page's test hooks.
    this.received = [];
    this.chatLog = [];
    this.live = false;
    this.chat = new ChatPanel({
      log: $('#chat-log'),
      form: $('#chat-form'),
      input: $('#chat-input'),
      fileInput: $('#file-input'),
      onSend: (text) => this.#sendChat(text),
      onFiles: (files) => this.#sendFiles(files),
    });

    call.on('peer', (e) => this.#onPeer(e));
    call.on('peer-left', (e) => this.#onPeerLeft(e));
    call.on('track', (e) => this.#onTrack(e));
    // The old connection's screen track is gone; a new one comes as a track.
    call.on('session', ({ peerId }) => this.grid.remove(`${peerId}:screen`));
    call.on('connection', ({ peerId, state }) => this.grid.get(peerId)?.setStatus(CONNECTION_TEXT[state] ?? ''));
    call.on('chat', (e) => this.#onChat(e));
    call.on('progress', (e) => this.chat.progress({ ...e, key: `${e.id}:${e.peerId}`, peerName: call.nameOf(e.peerId) }));
    call.on('received', (e) => this.#onFile(e));
    call.on('failed', (e) => this.chat.failed({ ...e, key: `${e.id}:${e.peerId}` }));
    call.on('signaling', (e) => this.#onSignaling(e));
    media.on('track', () => this.#renderSelf());
    media.on('state', () => this.#renderSelf());
  }

  // Called once joined: our own tile, then live updates.
  start(name) {
    this.selfName = name;
    this.live = true;
    this.#renderSelf();
    this.#updateCount();
    this.statsTimer = setInterval(() => this.#pollStats(), STATS_EVERY_MS);
  }

  stop() {
    this.live = false;
    clearInterval(this.statsTimer);
    this.speaking.stop();
    this.grid.clear();
    this.remoteStreams.clear();
    for (const id of [...this.stats.cards.keys()]) this.stats.remove(id);
    this.stats.local(null);
  }

  #renderSelf() {
    if (!this.live) return;
    const media = this.media;
    const tile = this.grid.upsert('self', { name: this.selfName, self: true });
    tile.setStream(media.camera);
    tile.setState(media.state);
    this.speaking.watch('self', media.camera);
    if (media.sharing) {
      this.grid.upsert('self:screen', { name: this.selfName, self: true, role: 'screen' }).setStream(media.screen);
    } else {
      this.grid.remove('self:screen');
    }
  }

  #onPeer({ peerId, name, state }) {
    const isNew = !this.grid.get(peerId);
    const tile = this.grid.upsert(peerId, { name });
    tile.setState(state);
    this.grid.get(`${peerId}:screen`)?.setName(name);
    if (!state.screen) this.grid.remove(`${peerId}:screen`);
    if (isNew && this.live) toast(`${name} joined`, 'info', 3000);
    this.#updateCount();
  }

  #onPeerLeft({ peerId, name, reason }) {
    this.grid.remove(peerId);
    this.grid.remove(`${peerId}:screen`);
    this.stats.remove(peerId);
    this.speaking.unwatch(peerId);
    this.remoteStreams.delete(peerId);
    if (this.live && reason !== 'rejoined') toast(reason === 'timeout' ? `${name} lost the connection` : `${name} left`, 'info', 3000);
    this.#updateCount();
  }

  #onTrack({ peerId, stream, role }) {
    const name = this.call.nameOf(peerId);
    if (role === 'screen') {
      const key = `${peerId}:screen`;
      this.grid.upsert(key, { name, role: 'screen' }).setStream(stream);
      // The sharer stopping flips its transceiver to recvonly, which removes
      // the track from this stream.
      stream.onremovetrack = () => {
        if (!stream.getVideoTracks().length) this.grid.remove(key);
      };
      return;
    }
    this.grid.upsert(peerId, { name }).setStream(stream);
    this.remoteStreams.set(peerId, stream);
    this.speaking.watch(peerId, stream);
  }

  #onChat({ peerId, text, ts }) {
    const name = this.call.nameOf(peerId);
    this.chatLog.push({ from: peerId, name, text, ts });
    this.chat.message({ name, text, ts });
    this.onUnread();
  }

  #sendChat(text) {
    const sent = this.call.sendChat(text);
    this.chatLog.push({ from: 'self', text, ts: Date.now() });
    this.chat.message({ text, ts: Date.now(), self: true });
    if (!sent) this.chat.notice('Nobody is connected yet: the message was not delivered.');
  }

  #sendFiles(files) {
    if (!this.call.peers.size) {
      this.chat.notice('Nobody is here to receive files yet.');
      return;
    }
    for (const file of files) this.call.sendFile(file);
  }

  #onFile(e) {
    const name = this.call.nameOf(e.peerId);
    this.received.push({ from: e.peerId, name: e.name, size: e.size, blob: e.blob });
    this.chat.received({ key: `${e.id}:${e.peerId}`, name: e.name, blob: e.blob });
    toast(`${name} sent you ${e.name}`, 'ok', 4000);
    this.onUnread();
  }

  #onSignaling({ status, delayMs }) {
    const pill = $('#net-status');
    const ok = status === 'connected';
    pill.textContent = ok ? 'Connected' : 'Reconnecting…';
    pill.classList.toggle('pill-ok', ok);
    pill.classList.toggle('pill-warn', !ok);
    pill.title = ok ? 'Signaling connected' : `Signaling lost; retrying in ${Math.round(delayMs / 1000)} s. The call goes on meanwhile.`;
  }

  #updateCount() {
    $('#people-count').textContent = String(this.call.peers.size + 1);
  }

  // The background effect's cost, for the "This device" card: the average
  // time per frame (model and drawing) and the frames it keeps up with.
  #effectRows() {
    const { background, effect, effectState } = this.media;
    if (background.kind === 'none' && effectState.state !== 'failed') return null;
    const what = background.kind === 'blur' ? `${background.level} blur` : background.kind === 'image' ? 'picture' : 'none';
    const rows = [['Background', `${what} (${effectState.state})`]];
    if (effect?.ready) {
      const s = effect.stats;
      rows.push(['Effect time', `${s.frameMs.toFixed(1)} ms per frame`]);
      rows.push(['Effect rate', `${s.fps} fps${s.cameraFps ? ` of the camera's ${Math.round(s.cameraFps)}` : ''}`]);
    }
    return rows;
  }

  async #pollStats() {
    this.stats.local(this.#effectRows());
    for (const [peerId, peer] of this.call.peers) {
      try {
        const s = await peer.stats();
        this.grid.get(peerId)?.setRoute(routeLabel(s.pair));
        this.stats.update(peerId, this.call.nameOf(peerId), s, peer.pc.connectionState);
      } catch {
        // The peer left while its stats were being read.
      }
    }
  }
}
