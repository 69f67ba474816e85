// The call: one signaling connection, one PeerSession per other peer in the
// room (a full mesh), and the local media they all send. No DOM here; the UI
// listens to the events.
//
// Events (each with peerId where it concerns one peer): joined, peer
// ({peerId, name, state}) when a peer appears or changes, peer-left,
// session (the connection to a peer was rebuilt: its tracks are new), track,
// connection, chat, progress, received, failed, signaling
// ({status: 'connected'|'reconnecting'}), ended ({reason, message}).
import { Emitter } from './emitter.js';
import { Signaling } from './signaling.js';
import { PeerSession } from './peer.js';

// Upload budget for our camera, shared by every peer we send it to: a mesh
// sends one copy per peer, so each gets less as the room fills up.
const VIDEO_BUDGET_BPS = 2_500_000;
const VIDEO_MAX_BPS = 1_500_000;
const VIDEO_MIN_BPS = 150_000;

// Each peer connection encodes the camera on its own, so CPU grows with the
// number of peers too: scale the resolution down as the room fills up.
function videoSendingFor(peerCount) {
  const share = VIDEO_BUDGET_BPS / Math.max(1, peerCount);
  return {
    maxBitrate: Math.round(Math.min(VIDEO_MAX_BPS, Math.max(VIDEO_MIN_BPS, share))),
    scaleResolutionDownBy: peerCount <= 1 ? 1 : peerCount <= 3 ? 1.5 : 2,
  };
}

// Testing one TURN transport at a time: `?turn=udp`, `?turn=tcp` or
// `?turn=tls` in the page's address keeps only the TURN URLs of that
// transport (tls: the turns: URLs) in the iceServers the page uses, and drops
// the STUN URLs. Combine it with "Relay only" to see whether that transport
// alone gets a call through. Any other value is ignored.
export const TURN_TRANSPORTS = ['udp', 'tcp', 'tls'];

export function turnFilterFromUrl(search = globalThis.location?.search ?? '') {
  const value = new URLSearchParams(search).get('turn')?.toLowerCase() ?? null;
  if (value === null) return null;
  if (TURN_TRANSPORTS.includes(value)) return value;
  console.warn(`?turn=${value} ignored: expected one of ${TURN_TRANSPORTS.join(', ')}`);
  return null;
}

// udp, tcp or tls for a turn:/turns: URL; null for anything else (stun:).
function turnTransportOf(url) {
  const m = /^(turns?):[^?]*(?:\?(.*))?$/i.exec(url);
  if (!m) return null;
  if (m[1].toLowerCase() === 'turns') return 'tls';
  return (new URLSearchParams(m[2] ?? '').get('transport') || 'udp').toLowerCase();
}

export function filterIceServers(servers, only) {
  if (!only) return servers;
  return servers
    .map((s) => ({ ...s, urls: [].concat(s.urls).filter((u) => turnTransportOf(u) === only) }))
    .filter((s) => s.urls.length > 0);
}

export class Call extends Emitter {
  constructor(media) {
    super();
    this.media = media;
    this.signaling = new Signaling();
    this.peers = new Map();
    this.names = new Map();
    this.states = new Map();
    this.selfId = null;
    this.iceServers = [];
    this.relayOnly = false;
    // udp, tcp, tls or null: see turnFilterFromUrl.
    this.turnOnly = turnFilterFromUrl();
    this.active = false;

    const s = this.signaling;
    s.on('joined', (m) => this.#onJoined(m));
    s.on('peer.joined', ({ peer }) => {
      this.#remember(peer);
      this.#ensurePeer(peer.id, false);
    });
    s.on('peer.left', ({ peerId, reason }) => this.#removePeer(peerId, reason));
    s.on('peer.state', ({ peerId, state }) => {
      this.states.set(peerId, state);
      this.#announce(peerId);
    });
    s.on('signal', ({ from, kind, payload }) => {
      // "end": the other side dropped its connection to us and is about to
      // offer a new one (see setRelayOnly).
      if (kind === 'end') {
        this.#replaceSession(from, false);
        return;
      }
      // A signal can only come from a peer in the room; create its session
      // if its peer.joined has not been seen (e.g. lost across a reconnect).
      this.#ensurePeer(from, false).handleSignal(kind, payload);
    });
    s.on('ice.credentials', ({ iceServers }) => {
      this.iceServers = filterIceServers(iceServers, this.turnOnly);
      this.#refreshIceServers();
      // The browser keeps refreshing its TURN allocations with the
      // credential they were made with, which is about to expire; an ICE
      // restart allocates anew with the fresh one.
      for (const peer of this.peers.values()) peer.restartIce();
    });
    s.on('reconnecting', (e) => this.emit('signaling', { status: 'reconnecting', ...e }));
    s.on('closed', (e) => {
      this.#teardown();
      this.emit('ended', e);
    });

    media.on('track', ({ role, track, stream }) => {
      for (const peer of this.peers.values()) peer.setTrack(role, track, stream);
    });
    media.on('state', (state) => {
      if (this.active) this.signaling.state(state);
    });
  }

  // Resolves with the joined message; rejects with a SignalingError.
  async join(room, name, { relayOnly = false } = {}) {
    this.relayOnly = relayOnly;
    this.active = true;
    try {
      return await this.signaling.join(room, name);
    } catch (err) {
      this.active = false;
      throw err;
    }
  }

  leave() {
    this.signaling.leave();
    this.#teardown();
  }

  // Browsers apply a new transport policy to new candidates only and keep
  // using the paths they have, so every connection is rebuilt from scratch;
  // "end" tells the other side to drop its half and wait for our offer.
  setRelayOnly(on) {
    this.relayOnly = on;
    for (const id of [...this.peers.keys()]) {
      this.signaling.signal(id, 'end', { reason: 'restart' });
      this.#replaceSession(id, true);
    }
  }

  nameOf(peerId) {
    return this.names.get(peerId) || 'Guest';
  }

  sendChat(text) {
    let sent = 0;
    for (const peer of this.peers.values()) if (peer.sendChat(text)) sent += 1;
    return sent;
  }

  // Sends `file` to every peer; returns the transfer id shared by all copies.
  sendFile(file) {
    const id = crypto.randomUUID();
    for (const peer of this.peers.values()) peer.sendFile(file, id);
    return id;
  }

  rtcConfig() {
    return {
      iceServers: this.iceServers,
      iceTransportPolicy: this.relayOnly ? 'relay' : 'all',
      bundlePolicy: 'max-bundle',
    };
  }

  #onJoined(msg) {
    this.selfId = msg.peerId;
    this.iceServers = filterIceServers(msg.iceServers, this.turnOnly);
    const present = new Set(msg.peers.map((p) => p.id));
    if (!msg.resumed) {
      // A new peer id: every old connection is void. As the newcomer we
      // offer to everyone already in the room.
      for (const id of [...this.peers.keys()]) this.#removePeer(id, 'rejoined');
      for (const p of msg.peers) {
        this.#remember(p);
        this.#ensurePeer(p.id, true);
      }
    } else {
      // Resumed: the connections survive. Peers that left meanwhile are gone
      // from the list; newcomers have queued offers for us.
      for (const id of [...this.peers.keys()]) if (!present.has(id)) this.#removePeer(id, 'timeout');
      for (const p of msg.peers) {
        this.#remember(p);
        this.#ensurePeer(p.id, false);
      }
      this.#refreshIceServers();
    }
    this.signaling.state(this.media.state);
    this.emit('signaling', { status: 'connected', resumed: msg.resumed });
    this.emit('joined', msg);
  }

  #remember(peer) {
    this.names.set(peer.id, peer.name || '');
    this.states.set(peer.id, peer.state || { audio: false, video: false, screen: false });
    this.#announce(peer.id);
  }

  #announce(peerId) {
    this.emit('peer', { peerId, name: this.nameOf(peerId), state: this.states.get(peerId) });
  }

  #ensurePeer(id, initiator) {
    let peer = this.peers.get(id);
    if (peer) return peer;
    const media = this.media;
    peer = new PeerSession({
      id,
      selfId: this.selfId,
      signaling: this.signaling,
      rtcConfig: this.rtcConfig(),
      initiator,
      localRoles: { [media.camera.id]: 'camera', [media.screen.id]: 'screen' },
    });
    // Order matters: the first video track added is the one a newcomer's
    // offer matches first, and that should be the camera.
    for (const t of media.camera.getTracks()) peer.setTrack(t.kind, t, media.camera);
    const screen = media.screen.getVideoTracks()[0];
    if (screen) peer.setTrack('screen', screen, media.screen);
    for (const type of ['track', 'connection', 'chat', 'progress', 'received', 'failed']) {
      peer.on(type, (e) => this.emit(type, type === 'connection' ? { peerId: id, state: e } : { peerId: id, ...e }));
    }
    this.peers.set(id, peer);
    if (!this.names.has(id)) this.#remember({ id, name: '', state: null });
    this.#rebalance();
    return peer;
  }

  // A new connection to a peer that stays in the call.
  #replaceSession(id, initiator) {
    this.peers.get(id)?.close();
    this.peers.delete(id);
    this.emit('session', { peerId: id });
    this.#ensurePeer(id, initiator);
  }

  #removePeer(id, reason) {
    const peer = this.peers.get(id);
    if (peer) peer.close();
    const name = this.nameOf(id);
    this.peers.delete(id);
    this.names.delete(id);
    this.states.delete(id);
    this.emit('peer-left', { peerId: id, name, reason });
    this.#rebalance();
  }

  #rebalance() {
    const sending = videoSendingFor(this.peers.size);
    for (const peer of this.peers.values()) peer.setVideoSending(sending);
  }

  #refreshIceServers() {
    for (const peer of this.peers.values()) peer.setIceServers(this.iceServers);
  }

  #teardown() {
    this.active = false;
    for (const id of [...this.peers.keys()]) this.#removePeer(id, 'left');
  }
}
