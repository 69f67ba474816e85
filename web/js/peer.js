// One RTCPeerConnection to one remote peer, with "perfect negotiation"
// (https://w3c.github.io/webrtc-pc/#perfect-negotiation-example): either side
// may start a negotiation at any time (a screen share, an ICE restart), and
// when both offer at once the polite side yields, so nothing deadlocks.
//
// Events: track ({track, stream, role: 'camera'|'screen'}), connection
// (RTCPeerConnectionState), chat ({text, ts}), plus the FileChannel events
// progress, received and failed.
import { Emitter } from './emitter.js';
import { FileChannel } from './transfer.js';
import { summarize } from './stats.js';

// How long ICE may stay "disconnected" before we restart it: short drops
// heal by themselves, longer ones usually mean a changed network.
const DISCONNECTED_GRACE_MS = 4000;
// How long the peer already in the room waits for the newcomer's offer
// before offering itself (the newcomer may have lost its connection).
const FIRST_OFFER_WAIT_MS = 8000;

export class PeerSession extends Emitter {
  // initiator: we are the newcomer and send the first offer
  // (docs/protocol.md: the peers already there wait for it).
  constructor({ id, selfId, signaling, rtcConfig, initiator, localRoles }) {
    super();
    this.id = id;
    this.signaling = signaling;
    // Who yields on glare must be agreed without talking: compare peer ids.
    this.polite = selfId < id;
    this.localRoles = localRoles;
    this.remoteRoles = {};
    this.senders = {};
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingRemoteAnswer = false;
    this.awaitingOffer = !initiator;
    this.pendingCandidates = [];
    // Incoming signals are handled one at a time, in arrival order, so each
    // decision sees the state the previous signal left.
    this.inbox = Promise.resolve();
    // Track swaps run one at a time and the newest choice wins: quick
    // switches (background effects) would otherwise leave whichever
    // replaceTrack happened to settle last on the sender.
    this.trackSwaps = Promise.resolve();
    this.wantedTracks = {};
    this.timers = {};
    this.closed = false;
    this.lastStats = null;
    this.videoSending = null;

    const pc = new RTCPeerConnection(rtcConfig);
    this.pc = pc;
    pc.onnegotiationneeded = () => this.#negotiate();
    pc.onicecandidate = ({ candidate }) => {
      // The end-of-candidates null needs no relaying: ICE copes without it.
      if (candidate) this.signaling.signal(this.id, 'candidate', candidate.toJSON());
    };
    pc.ontrack = (ev) => this.#onTrack(ev);
    pc.onconnectionstatechange = () => this.emit('connection', pc.connectionState);
    pc.oniceconnectionstatechange = () => this.#onIceState();
    pc.onsignalingstatechange = () => {
      if (pc.signalingState === 'stable') this.#applySending();
    };

    // Negotiated channels (fixed ids on both sides) exist at once on both
    // ends and need no extra offer/answer round for announcing them.
    this.chat = pc.createDataChannel('chat', { negotiated: true, id: 0 });
    this.chat.onmessage = (ev) => this.#onChat(ev.data);
    this.files = new FileChannel(pc.createDataChannel('files', { negotiated: true, id: 1 }));
    for (const type of ['progress', 'received', 'failed']) this.files.on(type, (e) => this.emit(type, e));

    if (!initiator) {
      this.timers.firstOffer = setTimeout(() => {
        if (this.awaitingOffer) {
          this.awaitingOffer = false;
          this.#negotiate();
        }
      }, FIRST_OFFER_WAIT_MS);
    }
  }

  // Sends `track` in `role` (audio, video or screen); null stops sending.
  async setTrack(role, track, stream) {
    if (this.closed) return;
    const sender = this.senders[role];
    if (!sender) {
      if (track) this.senders[role] = this.pc.addTrack(track, stream);
      return;
    }
    this.wantedTracks[role] = track;
    this.trackSwaps = this.trackSwaps
      .then(async () => {
        // A newer choice for this role is queued behind: it does the swap.
        if (this.closed || this.wantedTracks[role] !== track) return;
        await sender.replaceTrack(track);
        if (role === 'screen') {
          // A screen share comes and goes: flipping the direction tells the
          // other side (its track ends) and costs one renegotiation.
          const tr = this.pc.getTransceivers().find((t) => t.sender === sender);
          if (tr && !tr.stopped) tr.direction = track ? 'sendrecv' : 'recvonly';
        }
        this.#applySending();
      })
      .catch((err) => console.warn(`replaceTrack ${role} for ${this.id}:`, err));
    await this.trackSwaps;
  }

  // Handles one relayed signal (offer, answer or candidate) from this peer.
  handleSignal(kind, payload) {
    this.inbox = this.inbox
      .then(() => {
        if (this.closed) return undefined;
        if (kind === 'offer' || kind === 'answer') return this.#onDescription(payload);
        if (kind === 'candidate') return this.#onCandidate(payload);
        return undefined;
      })
      .catch((err) => console.warn(`signal ${kind} from ${this.id}:`, err));
  }

  // Fresh TURN credentials, used by the next gathering (an ICE restart).
  setIceServers(iceServers) {
    if (this.closed) return;
    this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers });
  }

  restartIce() {
    if (this.closed) return;
    this.awaitingOffer = false;
    this.pc.restartIce();
  }

  // Caps the camera's bitrate and resolution ({maxBitrate (bits/s),
  // scaleResolutionDownBy}); the caller shares a budget between all peers,
  // since in a mesh every peer gets its own copy of our video.
  setVideoSending(sending) {
    this.videoSending = sending;
    this.#applySending();
  }

  sendChat(text) {
    if (this.chat.readyState !== 'open') return false;
    this.chat.send(JSON.stringify({ t: 'chat', text, ts: Date.now() }));
    return true;
  }

  sendFile(file, id) {
    return this.files.send(file, id);
  }

  async stats() {
    this.lastStats = await summarize(this.pc, this.lastStats);
    return this.lastStats;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    for (const t of Object.values(this.timers)) clearTimeout(t);
    this.pc.close();
  }

  async #negotiate() {
    // The newcomer offers first; answering that offer negotiates our tracks
    // too, and the browser fires negotiationneeded again if anything is left.
    if (this.awaitingOffer || this.closed) return;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      this.#sendDescription();
    } catch (err) {
      console.warn(`offer to ${this.id} failed:`, err);
    } finally {
      this.makingOffer = false;
    }
  }

  #sendDescription() {
    const { type, sdp } = this.pc.localDescription;
    // roles: which of our stream ids is the camera and which the screen, so
    // the other side can lay out the tracks this description brings.
    this.signaling.signal(this.id, type, { type, sdp, roles: this.localRoles });
  }

  async #onDescription(payload) {
    if (!payload || (payload.type !== 'offer' && payload.type !== 'answer') || typeof payload.sdp !== 'string') return;
    if (payload.roles && typeof payload.roles === 'object') Object.assign(this.remoteRoles, payload.roles);
    const pc = this.pc;
    const description = { type: payload.type, sdp: payload.sdp };
    // An answer in flight means we will be stable when it lands.
    const readyForOffer = !this.makingOffer && (pc.signalingState === 'stable' || this.settingRemoteAnswer);
    const collision = description.type === 'offer' && !readyForOffer;
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) return;
    this.settingRemoteAnswer = description.type === 'answer';
    try {
      // For the polite side this rolls back its own offer implicitly.
      await pc.setRemoteDescription(description);
    } finally {
      this.settingRemoteAnswer = false;
    }
    if (description.type === 'offer') {
      this.awaitingOffer = false;
      clearTimeout(this.timers.firstOffer);
      await pc.setLocalDescription();
      this.#sendDescription();
    }
    await this.#flushCandidates();
  }

  // Candidates may arrive before the description they belong to (the offer
  // was ignored in a glare, or is still being applied): keep them until a
  // remote description is set.
  async #onCandidate(init) {
    if (!init || typeof init.candidate !== 'string') return;
    if (!this.pc.remoteDescription) {
      this.pendingCandidates.push(init);
      return;
    }
    await this.#addCandidate(init);
  }

  async #flushCandidates() {
    const list = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const c of list) await this.#addCandidate(c);
  }

  async #addCandidate(init) {
    try {
      await this.pc.addIceCandidate(init);
    } catch (err) {
      // Candidates of an offer we ignored, or of an ICE generation that a
      // restart replaced, are expected to fail.
      if (!this.ignoreOffer) console.debug(`candidate from ${this.id} not added:`, err.message);
    }
  }

  #onTrack(ev) {
    const stream = ev.streams[0] ?? new MediaStream([ev.track]);
    const role = this.remoteRoles[stream.id] === 'screen' ? 'screen' : 'camera';
    this.emit('track', { track: ev.track, stream, role });
  }

  #onIceState() {
    const state = this.pc.iceConnectionState;
    clearTimeout(this.timers.disconnected);
    if (state === 'failed') {
      this.restartIce();
    } else if (state === 'disconnected') {
      this.timers.disconnected = setTimeout(() => {
        if (this.pc.iceConnectionState === 'disconnected') this.restartIce();
      }, DISCONNECTED_GRACE_MS);
    }
  }

  #onChat(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg.t === 'chat' && typeof msg.text === 'string') {
      this.emit('chat', { text: msg.text.slice(0, 10000), ts: Number(msg.ts) || Date.now() });
    }
  }

  async #applySending() {
    const sender = this.senders.video;
    const want = this.videoSending;
    if (!sender?.track || !want || this.closed) return;
    const params = sender.getParameters();
    if (!params.encodings?.length) return;
    const enc = params.encodings[0];
    if (enc.maxBitrate === want.maxBitrate && enc.scaleResolutionDownBy === want.scaleResolutionDownBy) return;
    Object.assign(enc, want);
    try {
      await sender.setParameters(params);
    } catch (err) {
      // A negotiation in progress can invalidate the parameters; the next
      // stable state applies them again.
      console.debug('setParameters:', err.message);
    }
  }
}
