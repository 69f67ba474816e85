// The stats panel: one card per peer with what getStats says about the
// connection (see stats.js for how the numbers are derived).
import { el, formatBitrate } from './dom.js';
import { describeCandidate } from './stats.js';

const ROWS = [
  ['Connection', (s, state) => state],
  ['Route', (s) => (s.pair ? `${describeCandidate(s.pair.local)} ⇄ ${describeCandidate(s.pair.remote)}` : '–')],
  ['Local', (s) => endpoint(s.pair?.local)],
  ['Remote', (s) => endpoint(s.pair?.remote)],
  ['RTT', (s) => (s.rttMs == null ? '–' : `${Math.round(s.rttMs)} ms`)],
  ['Bitrate in', (s) => formatBitrate(s.bitrateIn)],
  ['Bitrate out', (s) => formatBitrate(s.bitrateOut)],
  ['Packets lost', (s) => `${s.packetsLost}${s.packetsIn ? ` (${((s.packetsLost / (s.packetsLost + s.packetsIn)) * 100).toFixed(1)}%)` : ''}`],
  ['Video in', (s) => videos(s.videoIn)],
  ['Video out', (s) => videos(s.videoOut)],
];

function endpoint(c) {
  return c ? `${c.address ?? '?'}:${c.port ?? '?'}` : '–';
}

function videos(list) {
  if (!list.length) return '–';
  return list.map((v) => (v.width ? `${v.width}×${v.height} @ ${Math.round(v.fps)} fps` : 'no frames')).join(', ');
}

export class StatsPanel {
  constructor(root) {
    this.root = root;
    this.cards = new Map();
    this.empty = el('p', { class: 'panel-empty' }, 'Statistics appear here once someone joins.');
    root.append(this.empty);
  }

  update(peerId, name, summary, state) {
    let card = this.cards.get(peerId);
    if (!card) {
      const title = el('h3', { class: 'stats-title' });
      const values = ROWS.map(() => el('dd'));
      const dl = el('dl', { class: 'stats-list' }, ROWS.map(([label], i) => [el('dt', {}, label), values[i]]));
      card = { node: el('article', { class: 'stats-card', 'data-peer': peerId }, title, dl), title, values };
      this.cards.set(peerId, card);
      this.root.append(card.node);
    }
    card.title.textContent = name;
    ROWS.forEach(([, fn], i) => {
      card.values[i].textContent = fn(summary, state);
    });
    this.empty.hidden = this.cards.size > 0;
  }

  // The card about this device: rows [[label, value], ...], or null to
  // remove it. It comes first, before the peers' cards.
  local(rows) {
    if (!rows) {
      this.localCard?.node.remove();
      this.localCard = null;
      return;
    }
    if (!this.localCard) {
      const dl = el('dl', { class: 'stats-list' });
      this.localCard = { node: el('article', { class: 'stats-card', 'data-peer': 'self' }, el('h3', { class: 'stats-title' }, 'This device'), dl), dl };
      this.root.prepend(this.localCard.node);
    }
    this.localCard.dl.replaceChildren(...rows.flatMap(([label, value]) => [el('dt', {}, label), el('dd', {}, value)]));
  }

  remove(peerId) {
    this.cards.get(peerId)?.node.remove();
    this.cards.delete(peerId);
    this.empty.hidden = this.cards.size > 0;
  }
}
