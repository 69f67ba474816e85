// The chat panel: text messages and file transfers (with progress bars and,
// for received files, a download link) in one timeline.
import { el, formatBytes } from './dom.js';
import { icon } from './icons.js';

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

export class ChatPanel {
  constructor({ log, form, input, fileInput, onSend, onFiles }) {
    this.log = log;
    this.transfers = new Map();
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      onSend(text);
      input.value = '';
    });
    fileInput.addEventListener('change', () => {
      const files = [...fileInput.files];
      fileInput.value = '';
      if (files.length) onFiles(files);
    });
  }

  message({ name, text, ts, self }) {
    this.#append(
      el(
        'li',
        { class: `msg${self ? ' msg-self' : ''}` },
        el('div', { class: 'msg-meta' }, el('strong', {}, self ? 'You' : name), el('time', {}, timeFmt.format(ts))),
        el('p', { class: 'msg-text' }, text),
      ),
    );
  }

  notice(text) {
    this.#append(el('li', { class: 'msg-notice' }, text));
  }

  // One row per file and peer; created on the first progress event.
  progress({ key, dir, name, size, bytes, peerName }) {
    let t = this.transfers.get(key);
    if (!t) {
      const bar = el('progress', { max: 100, value: 0, 'aria-label': `Transfer of ${name}` });
      const status = el('span', { class: 'file-status' });
      const node = el(
        'li',
        { class: `msg msg-file${dir === 'out' ? ' msg-self' : ''}` },
        el('div', { class: 'msg-meta' }, el('strong', {}, dir === 'out' ? `You → ${peerName}` : peerName)),
        el('div', { class: 'file-row' }, icon('clip'), el('span', { class: 'file-name' }, name), el('span', { class: 'file-size' }, formatBytes(size))),
        bar,
        status,
      );
      t = { node, bar, status };
      this.transfers.set(key, t);
      this.#append(node);
    }
    const pct = size ? Math.min(100, Math.round((bytes / size) * 100)) : 100;
    t.bar.value = pct;
    t.status.textContent = pct >= 100 ? (dir === 'out' ? 'Sent' : 'Received') : `${pct}%`;
  }

  received({ key, name, blob }) {
    const t = this.transfers.get(key);
    if (!t) return;
    t.bar.remove();
    const url = URL.createObjectURL(blob);
    t.status.replaceChildren(el('a', { class: 'btn btn-small', href: url, download: name }, icon('download'), 'Save'));
  }

  failed({ key, error }) {
    const t = this.transfers.get(key);
    if (!t) return;
    t.node.classList.add('msg-error');
    t.status.textContent = `Failed: ${error}`;
  }

  #append(node) {
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    this.log.append(node);
    if (atBottom) node.scrollIntoView({ block: 'end' });
  }
}
