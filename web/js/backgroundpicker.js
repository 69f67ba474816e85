// The "Background" menu: none, light or strong blur, a bundled picture, or
// one the person picks from disk (read in the page, never uploaded or
// stored). The lobby (under the preview) and the call's settings each have
// one; both show the same choice and the effect's state (media.js).
import { el } from './dom.js';

// Drawn for natbridge (web/img/backgrounds/*.svg).
export const PICTURES = [
  { id: 'dusk', label: 'Dusk', src: '/img/backgrounds/dusk.svg' },
  { id: 'lagoon', label: 'Lagoon', src: '/img/backgrounds/lagoon.svg' },
  { id: 'studio', label: 'Studio', src: '/img/backgrounds/studio.svg' },
];

const OPTIONS = [
  { value: 'none', label: 'None', swatch: 'bg-swatch-none' },
  { value: 'blur:light', label: 'Light blur', swatch: 'bg-swatch-blur-light' },
  { value: 'blur:strong', label: 'Strong blur', swatch: 'bg-swatch-blur-strong' },
  ...PICTURES.map((p) => ({ value: `image:${p.id}`, label: p.label, src: p.src })),
];

const STATUS = {
  off: 'Runs on this device: the model ships with this server and nothing is uploaded.',
  loading: 'Loading the background model…',
  on: 'Background on, made on this device.',
};

// The radio value of a background ({kind, level|id}).
function valueOf(bg) {
  if (bg.kind === 'blur') return `blur:${bg.level}`;
  if (bg.kind === 'image') return `image:${bg.id}`;
  return 'none';
}

function loadImage(src) {
  const img = new Image();
  img.src = src;
  return img.decode().then(() => img);
}

export class BackgroundPicker {
  constructor(media) {
    this.media = media;
    this.views = [];
    // The picture from disk: {id, image, url}; the object URL shows it in
    // the menus.
    this.custom = null;
    this.pictures = new Map();
    this.customCount = 0;
    this.turn = 0;
    media.on('effect', () => this.#render());
  }

  // Builds a menu into `root` (an empty element); `name` keeps its radio
  // group apart from the other menu's.
  mount(root, name) {
    const radios = [];
    const option = ({ value, label, swatch, src }) => {
      const input = el('input', { type: 'radio', name, value, class: 'visually-hidden' });
      input.addEventListener('change', () => input.checked && this.#choose(value));
      radios.push(input);
      const look = src
        ? el('img', { class: 'bg-swatch', src, alt: '', width: 64, height: 36 })
        : el('span', { class: `bg-swatch ${swatch}`, 'aria-hidden': 'true' });
      return el('label', { class: 'bg-option', title: label }, input, look, el('span', { class: 'bg-label' }, label));
    };
    const customThumb = el('img', { class: 'bg-swatch', alt: '', width: 64, height: 36, hidden: true });
    const customEmpty = el('span', { class: 'bg-swatch bg-swatch-empty', 'aria-hidden': 'true' });
    const customOption = option({ value: 'image:custom', label: 'Your picture', swatch: 'bg-swatch-empty' });
    customOption.querySelector('.bg-swatch').replaceWith(customEmpty, customThumb);
    const file = el('input', { type: 'file', accept: 'image/*', class: 'visually-hidden', 'aria-label': 'Choose a picture from this device' });
    file.addEventListener('change', () => this.#pickFile(file));
    const status = el('p', { class: 'hint bg-status', role: 'status' });
    const fieldset = el(
      'fieldset',
      { class: 'bg-picker' },
      el('legend', {}, 'Background'),
      el('div', { class: 'bg-options' }, OPTIONS.map(option), customOption),
      el('label', { class: 'btn btn-ghost btn-small bg-upload' }, file, 'Choose a picture…'),
      status,
    );
    root.replaceChildren(fieldset);
    this.views.push({ radios, customThumb, customEmpty, status });
    this.#render();
  }

  async #choose(value) {
    // A picture loads before it applies; a choice made meanwhile wins.
    const turn = ++this.turn;
    const [kind, arg] = value.split(':');
    if (kind === 'none') {
      this.media.setBackground({ kind: 'none' });
    } else if (kind === 'blur') {
      this.media.setBackground({ kind: 'blur', level: arg });
    } else if (arg === 'custom') {
      if (this.custom) this.media.setBackground({ kind: 'image', id: this.custom.id, image: this.custom.image });
    } else {
      const picture = PICTURES.find((p) => p.id === arg);
      try {
        if (!this.pictures.has(arg)) this.pictures.set(arg, await loadImage(picture.src));
      } catch {
        if (turn === this.turn) this.#render('That picture did not load.');
        return;
      }
      if (turn !== this.turn) return;
      this.media.setBackground({ kind: 'image', id: arg, image: this.pictures.get(arg) });
    }
    this.#render();
  }

  async #pickFile(input) {
    const file = input.files?.[0];
    input.value = '';
    if (!file) return;
    const turn = ++this.turn;
    let image;
    try {
      image = await createImageBitmap(file);
    } catch {
      if (turn === this.turn) this.#render('That file is not a picture this browser can read.');
      return;
    }
    if (turn !== this.turn) {
      image.close();
      return;
    }
    if (this.custom) {
      this.custom.image.close?.();
      URL.revokeObjectURL(this.custom.url);
    }
    this.customCount += 1;
    // A new id per file: the effect redraws its scaled copy when it changes.
    this.custom = { id: `custom-${this.customCount}`, image, url: URL.createObjectURL(file) };
    this.media.setBackground({ kind: 'image', id: this.custom.id, image });
    this.#render();
  }

  #render(problem = '') {
    const bg = this.media.background;
    const current = bg.kind === 'image' && bg.id.startsWith('custom-') ? 'image:custom' : valueOf(bg);
    const { state, message } = this.media.effectState;
    const text = problem || (state === 'failed' ? message : STATUS[state] ?? '');
    for (const view of this.views) {
      for (const radio of view.radios) {
        radio.checked = radio.value === current;
        if (radio.value === 'image:custom') radio.disabled = !this.custom;
      }
      view.customThumb.hidden = !this.custom;
      view.customEmpty.hidden = !!this.custom;
      if (this.custom) view.customThumb.src = this.custom.url;
      view.status.textContent = text;
      view.status.classList.toggle('bg-status-error', !!problem || state === 'failed');
    }
  }
}
