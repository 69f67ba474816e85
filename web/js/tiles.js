// The video grid: one tile per camera (ours and each peer's) and one per
// shared screen, laid out to fill the stage with the largest 16:9 tiles
// that fit.
import { el, initials } from './dom.js';
import { icon } from './icons.js';

const ASPECT = 16 / 9;

class Tile {
  constructor({ key, name, self, role }) {
    this.role = role;
    this.self = self;
    this.video = el('video', { autoplay: true, playsInline: true, muted: self });
    // Our own camera is mirrored like a mirror; a screen never is.
    if (self && role === 'camera') this.video.classList.add('mirror');
    this.nameNode = el('span', { class: 'tile-name' });
    this.micOff = el('span', { class: 'badge badge-mic', title: 'Microphone off' }, icon('mic-off'));
    this.sharing = el('span', { class: 'badge badge-share', title: 'Sharing the screen' }, icon('screen'), 'Sharing');
    this.route = el('span', { class: 'badge badge-route' });
    this.status = el('span', { class: 'tile-status' });
    this.avatar = el('div', { class: 'avatar', 'aria-hidden': 'true' }, el('span'));
    this.node = el(
      'figure',
      { class: `tile tile-${role}${self ? ' tile-self' : ''}`, 'data-key': key },
      this.video,
      this.avatar,
      this.status,
      el('figcaption', { class: 'tile-label' }, this.micOff, this.nameNode, this.sharing, this.route),
    );
    this.setName(name);
    this.setState({ audio: true, video: role === 'screen', screen: false });
    this.setStatus(self || role === 'screen' ? '' : 'Connecting…');
    this.setRoute('');
  }

  setName(name) {
    let label = name || 'You';
    if (this.role === 'screen') label = `${label} · screen`;
    else if (this.self && name) label = `${name} (you)`;
    this.nameNode.textContent = label;
    this.node.setAttribute('aria-label', label);
    this.avatar.firstChild.textContent = initials(name || label);
  }

  setStream(stream) {
    if (this.video.srcObject !== stream) this.video.srcObject = stream;
  }

  setState({ audio, video, screen }) {
    this.micOff.hidden = this.role === 'screen' || audio;
    this.sharing.hidden = this.role === 'screen' || !screen;
    this.node.classList.toggle('no-video', this.role === 'camera' && !video);
  }

  setSpeaking(on) {
    this.node.classList.toggle('speaking', on);
  }

  setStatus(text) {
    this.status.textContent = text;
    this.status.hidden = !text;
  }

  setRoute(text) {
    this.route.textContent = text || '';
    this.route.hidden = !text;
  }
}

export class Grid {
  constructor(root) {
    this.root = root;
    this.tiles = new Map();
    new ResizeObserver(() => this.#layout()).observe(root);
  }

  // key: 'self', 'self:screen', peerId or `${peerId}:screen`.
  upsert(key, { name, self = false, role = 'camera' }) {
    let tile = this.tiles.get(key);
    if (!tile) {
      tile = new Tile({ key, name, self, role });
      this.tiles.set(key, tile);
      // Screens first: they are what people look at.
      if (role === 'screen') this.root.prepend(tile.node);
      else this.root.append(tile.node);
      this.#layout();
    } else {
      tile.setName(name);
    }
    return tile;
  }

  get(key) {
    return this.tiles.get(key);
  }

  remove(key) {
    const tile = this.tiles.get(key);
    if (!tile) return;
    tile.video.srcObject = null;
    tile.node.remove();
    this.tiles.delete(key);
    this.#layout();
  }

  clear() {
    for (const key of [...this.tiles.keys()]) this.remove(key);
  }

  // Chooses the column count giving the biggest tiles and publishes the tile
  // width as a CSS variable; the flex layout does the rest.
  #layout() {
    const n = this.tiles.size;
    if (!n) return;
    const style = getComputedStyle(this.root);
    const gap = parseFloat(style.columnGap) || 0;
    const width = this.root.clientWidth - (parseFloat(style.paddingLeft) || 0) - (parseFloat(style.paddingRight) || 0);
    const height = this.root.clientHeight - (parseFloat(style.paddingTop) || 0) - (parseFloat(style.paddingBottom) || 0);
    let best = 0;
    for (let cols = 1; cols <= n; cols += 1) {
      const rows = Math.ceil(n / cols);
      const w = Math.min((width - gap * (cols - 1)) / cols, ((height - gap * (rows - 1)) / rows) * ASPECT);
      best = Math.max(best, w);
    }
    this.root.style.setProperty('--tile-w', `${Math.max(120, Math.floor(best))}px`);
  }
}
