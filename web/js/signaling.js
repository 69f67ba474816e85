// WebSocket client for the natbridge signaling protocol, version 1
// (docs/protocol.md). It joins one room, keeps the connection alive and, when
// the connection drops, reconnects and resumes the same peer id with the
// resume token, so a network blip does not end the call.
//
// Events: joined (the joined message; also after a resume), peer.joined,
// peer.left, peer.state, signal, ice.credentials, reconnecting ({attempt,
// delayMs}), closed ({reason}), error (an error message without a request).
import { Emitter } from './emitter.js';

const SUBPROTOCOL = 'natbridge.v1';
// Delays before reconnect attempts: the first is short because most drops
// are a single lost connection, the rest back off so a dead server is not
// hammered.
const BACKOFF_MS = [250, 1000, 2000, 4000, 8000];
const REQUEST_TIMEOUT_MS = 10000;
// Bye reasons after which reconnecting would only repeat the failure.
const FINAL_BYE = new Map([
  ['replaced', 'this call was taken over by another tab or device'],
  ['kicked', 'the server\'s operator removed you from this room'],
]);
// Errors on join that a retry cannot fix.
const FINAL_JOIN_ERRORS = new Set([
  'room_full', 'room_invalid', 'name_invalid', 'token_required', 'token_invalid',
  'token_expired', 'token_not_yet_valid', 'token_lifetime_too_long', 'token_room_mismatch',
  'draining',
]);

export function defaultUrl() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}/ws`;
}

export class SignalingError extends Error {
  constructor(code, reason) {
    super(reason || code);
    this.code = code;
  }
}

export class Signaling extends Emitter {
  constructor(url = defaultUrl()) {
    super();
    this.url = url;
    this.ws = null;
    this.room = null;
    this.name = '';
    this.peerId = null;
    this.resumeToken = null;
    this.resumed = false;
    this.limits = null;
    this.heartbeatMs = 20000;
    this.joinedNow = false;
    this.nextId = 1;
    this.pending = new Map();
    // Signals and state changes made while disconnected, sent after the
    // resume so that a negotiation in progress is not lost.
    this.outbox = [];
    this.attempt = 0;
    this.stopped = true;
    this.timers = { reconnect: 0, heartbeat: 0 };
    this.lastHeard = 0;
    this.joinWaiter = null;
  }

  // Joins `room`; resolves with the joined message, rejects with a
  // SignalingError (e.g. code room_full) if the server refuses.
  join(room, name) {
    this.room = room;
    this.name = name;
    this.stopped = false;
    this.peerId = null;
    this.resumeToken = null;
    return new Promise((resolve, reject) => {
      this.joinWaiter = { resolve, reject };
      this.#connect();
    });
  }

  // Leaves the room for good: the others see peer.left at once instead of
  // waiting for the resume grace period.
  leave() {
    this.stopped = true;
    this.#clearTimers();
    if (this.ws?.readyState === WebSocket.OPEN) {
      try {
        this.ws.send(JSON.stringify({ type: 'leave' }));
      } catch {
        // The socket is closing anyway.
      }
    }
    this.#drop(1000, 'leave');
    this.outbox = [];
    this.joinedNow = false;
  }

  // Relays a signal to one peer; queued while the connection is down.
  signal(to, kind, payload) {
    this.#sendOrQueue({ type: 'signal', to, kind, payload });
  }

  // Publishes this peer's media state; only the latest one is worth queueing.
  state(state) {
    this.outbox = this.outbox.filter((m) => m.type !== 'state');
    this.#sendOrQueue({ type: 'state', ...state });
  }

  // Sends a request with an id and resolves with its reply.
  request(msg) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SignalingError('timeout', `no reply to ${msg.type}`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      if (!this.#send({ ...msg, id })) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new SignalingError('offline', 'signaling is not connected'));
      }
    });
  }

  get connected() {
    return this.joinedNow && this.ws?.readyState === WebSocket.OPEN;
  }

  #connect() {
    clearTimeout(this.timers.reconnect);
    let ws;
    try {
      ws = new WebSocket(this.url, SUBPROTOCOL);
    } catch (err) {
      this.#fail(new SignalingError('connect_failed', err.message));
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => this.#onMessage(ev);
    ws.onclose = (ev) => this.#onClose(ws, ev);
    // onerror is always followed by onclose, which does the work.
  }

  #send(msg) {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  #sendOrQueue(msg) {
    if (!this.connected || !this.#send(msg)) this.outbox.push(msg);
  }

  #sendJoin() {
    const msg = { type: 'join', room: this.room, name: this.name };
    if (this.resumeToken) msg.resume = this.resumeToken;
    this.request(msg).then(
      (joined) => this.#onJoined(joined),
      (err) => this.#onJoinError(err),
    );
  }

  #onJoined(msg) {
    this.peerId = msg.peerId;
    this.resumeToken = msg.resumeToken;
    this.resumed = msg.resumed;
    this.limits = msg.limits;
    this.heartbeatMs = msg.heartbeatMs || this.heartbeatMs;
    this.joinedNow = true;
    this.attempt = 0;
    this.#startHeartbeat();
    const queued = this.outbox;
    this.outbox = [];
    // A fresh (not resumed) join means a new peer id: signals meant for the
    // old one would be misrouted, so they are dropped and the call rebuilt.
    if (msg.resumed) for (const m of queued) this.#sendOrQueue(m);
    this.emit('joined', msg);
    if (this.joinWaiter) {
      this.joinWaiter.resolve(msg);
      this.joinWaiter = null;
    }
  }

  #onJoinError(err) {
    if (err.code === 'resume_failed') {
      // The grace period ran out: join again as a new peer.
      this.resumeToken = null;
      this.#sendJoin();
    } else if (FINAL_JOIN_ERRORS.has(err.code) || this.joinWaiter) {
      this.#fail(err);
    } else {
      this.#drop(4000, 'join failed');
    }
  }

  #onMessage(ev) {
    this.lastHeard = Date.now();
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (msg.re !== undefined && this.pending.has(msg.re)) {
      const p = this.pending.get(msg.re);
      this.pending.delete(msg.re);
      clearTimeout(p.timer);
      if (msg.type === 'error') p.reject(new SignalingError(msg.code, msg.reason));
      else p.resolve(msg);
      return;
    }
    switch (msg.type) {
      case 'welcome':
        this.limits = msg.limits;
        this.#sendJoin();
        break;
      case 'bye':
        this.byeReason = msg;
        break;
      case 'pong':
        break;
      case 'error':
        this.emit('error', msg);
        break;
      default:
        this.emit(msg.type, msg);
    }
  }

  #onClose(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.joinedNow = false;
    this.#clearTimers();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new SignalingError('offline', 'connection closed'));
    }
    this.pending.clear();
    const bye = this.byeReason;
    this.byeReason = null;
    if (this.stopped) return;
    if (bye && FINAL_BYE.has(bye.reason)) {
      this.#fail(new SignalingError(bye.reason, FINAL_BYE.get(bye.reason)));
      return;
    }
    if (this.joinWaiter && !this.peerId) {
      // Never joined at all: report it rather than retrying silently.
      this.#fail(new SignalingError('connect_failed', `cannot reach the signaling server (code ${ev.code})`));
      return;
    }
    const delayMs = Math.max(bye?.retryAfterMs ?? 0, BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)]);
    this.attempt += 1;
    this.emit('reconnecting', { attempt: this.attempt, delayMs });
    this.timers.reconnect = setTimeout(() => this.#connect(), delayMs);
  }

  // Closes the socket and stops listening to it; onClose then runs at once
  // instead of after a closing handshake a dead network may never finish.
  #drop(code, reason) {
    const ws = this.ws;
    if (!ws) return;
    try {
      ws.close(code, reason);
    } catch {
      // Already closed.
    }
    this.#onClose(ws, { code });
  }

  #fail(err) {
    this.stopped = true;
    // The UI words room_full with the room's capacity.
    err.limits = this.limits;
    this.#drop(1000, err.code);
    if (this.joinWaiter) {
      this.joinWaiter.reject(err);
      this.joinWaiter = null;
    } else {
      this.emit('closed', { reason: err.code, message: err.message });
    }
  }

  // Browsers answer the server's ping frames by themselves, but cannot tell
  // the page that the link is dead. An application ping with a deadline
  // notices a silent connection (say after a network switch) and reconnects.
  #startHeartbeat() {
    clearInterval(this.timers.heartbeat);
    this.lastHeard = Date.now();
    const every = Math.max(1000, this.heartbeatMs / 2);
    this.timers.heartbeat = setInterval(() => {
      if (Date.now() - this.lastHeard > this.heartbeatMs * 1.5) {
        this.#drop(4000, 'heartbeat timeout');
      } else {
        this.#send({ type: 'ping', t: Date.now() });
      }
    }, every);
  }

  #clearTimers() {
    clearInterval(this.timers.heartbeat);
    clearTimeout(this.timers.reconnect);
  }
}
