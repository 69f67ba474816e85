// File transfer over one reliable, ordered RTCDataChannel, peer to peer.
//
// Wire format: a JSON text message {t: 'file', id, name, size, mime} opens a
// file, binary messages carry its bytes in order, {t: 'file-end', id} closes
// it. Files go one at a time per channel (a queue), so chunks never mix.
//
// Events: progress ({id, dir: 'out'|'in', name, size, bytes}),
// received ({id, name, size, mime, blob}), failed ({id, dir, name, error}).
import { Emitter } from './emitter.js';

// 16 KiB messages work between every browser's SCTP stack; bigger ones only
// help little, since throughput is bound by SCTP congestion control.
const CHUNK = 16 * 1024;
// Bytes read from the file at a time (split into CHUNKs).
const READ = 1024 * 1024;
// Backpressure: stop queueing above HIGH_WATER buffered bytes and resume at
// bufferedamountlow (LOW_WATER), so a big file never sits in memory twice.
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
// A receiver holds the whole file in memory before offering it as a Blob.
const MAX_FILE_BYTES = 1024 * 1024 * 1024;

export class FileChannel extends Emitter {
  constructor(channel) {
    super();
    this.channel = channel;
    channel.binaryType = 'arraybuffer';
    channel.bufferedAmountLowThreshold = LOW_WATER;
    channel.addEventListener('message', (ev) => this.#onMessage(ev.data));
    channel.addEventListener('close', () => this.#abortIncoming('the connection closed'));
    this.incoming = null;
    this.queue = Promise.resolve();
  }

  // Queues `file` for sending; resolves when it is handed to the network.
  send(file, id) {
    const run = () => this.#send(file, id).catch((err) => {
      this.emit('failed', { id, dir: 'out', name: file.name, error: err.message });
    });
    this.queue = this.queue.then(run);
    return this.queue;
  }

  async #send(file, id) {
    const ch = this.channel;
    if (file.size > MAX_FILE_BYTES) throw new Error('the file is larger than 1 GB');
    await this.#whenOpen();
    const progress = (bytes) => this.emit('progress', { id, dir: 'out', name: file.name, size: file.size, bytes });
    ch.send(JSON.stringify({ t: 'file', id, name: file.name, size: file.size, mime: file.type }));
    let offset = 0;
    while (offset < file.size) {
      const buf = await file.slice(offset, offset + READ).arrayBuffer();
      for (let i = 0; i < buf.byteLength; i += CHUNK) {
        if (ch.bufferedAmount > HIGH_WATER) {
          await this.#drained();
          progress(offset + i - ch.bufferedAmount);
        }
        if (ch.readyState !== 'open') throw new Error('the connection closed');
        ch.send(new Uint8Array(buf, i, Math.min(CHUNK, buf.byteLength - i)));
      }
      offset += buf.byteLength;
      progress(offset - ch.bufferedAmount);
    }
    ch.send(JSON.stringify({ t: 'file-end', id }));
    progress(file.size);
  }

  #whenOpen() {
    const ch = this.channel;
    if (ch.readyState === 'open') return Promise.resolve();
    if (ch.readyState !== 'connecting') return Promise.reject(new Error('the connection closed'));
    return new Promise((resolve, reject) => {
      ch.addEventListener('open', resolve, { once: true });
      ch.addEventListener('close', () => reject(new Error('the connection closed')), { once: true });
    });
  }

  #drained() {
    return new Promise((resolve) => {
      this.channel.addEventListener('bufferedamountlow', resolve, { once: true });
      this.channel.addEventListener('close', resolve, { once: true });
    });
  }

  #onMessage(data) {
    if (typeof data !== 'string') {
      this.#onChunk(data);
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg.t === 'file') {
      this.#abortIncoming('a new file started');
      if (!(msg.size >= 0 && msg.size <= MAX_FILE_BYTES)) return;
      const name = String(msg.name || 'file').slice(0, 255);
      this.incoming = { id: msg.id, name, size: msg.size, mime: String(msg.mime || ''), chunks: [], bytes: 0, shown: 0 };
      this.emit('progress', { id: msg.id, dir: 'in', name, size: msg.size, bytes: 0 });
    } else if (msg.t === 'file-end' && this.incoming?.id === msg.id) {
      const f = this.incoming;
      this.incoming = null;
      if (f.bytes !== f.size) {
        this.emit('failed', { id: f.id, dir: 'in', name: f.name, error: `got ${f.bytes} of ${f.size} bytes` });
        return;
      }
      const blob = new Blob(f.chunks, { type: f.mime || 'application/octet-stream' });
      this.emit('progress', { id: f.id, dir: 'in', name: f.name, size: f.size, bytes: f.size });
      this.emit('received', { id: f.id, name: f.name, size: f.size, mime: f.mime, blob });
    }
  }

  #onChunk(buf) {
    const f = this.incoming;
    if (!f) return;
    f.chunks.push(buf);
    f.bytes += buf.byteLength;
    if (f.bytes > f.size) {
      this.#abortIncoming('more bytes than announced');
      return;
    }
    // A progress event per 256 KiB keeps the UI smooth without flooding it.
    if (f.bytes - f.shown >= 256 * 1024) {
      f.shown = f.bytes;
      this.emit('progress', { id: f.id, dir: 'in', name: f.name, size: f.size, bytes: f.bytes });
    }
  }

  #abortIncoming(error) {
    const f = this.incoming;
    if (!f) return;
    this.incoming = null;
    this.emit('failed', { id: f.id, dir: 'in', name: f.name, error });
  }
}
