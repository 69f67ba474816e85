// Small DOM helpers. The page's CSP forbids inline styles and scripts, so
// everything is built with createElement and styled through CSS classes.

export const $ = (sel, root = document) => root.querySelector(sel);

// el('button', {class: 'x', onclick: fn, 'aria-label': 'y'}, child, 'text')
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      node.className = value;
    } else if (key === 'text') {
      node.textContent = value;
    } else if (key in node && typeof value !== 'string') {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? '' : value);
    }
  }
  node.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

const toastRoot = () => $('#toasts');

// A transient message in the aria-live region; kind is info, ok, warn or error.
export function toast(text, kind = 'info', ms = 5000) {
  const root = toastRoot();
  if (!root) return;
  const node = el('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
  root.append(node);
  setTimeout(() => node.classList.add('toast-out'), ms);
  setTimeout(() => node.remove(), ms + 400);
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

export function formatBitrate(bps) {
  if (bps == null) return '–';
  if (bps < 1000) return `${Math.round(bps)} bps`;
  if (bps < 1e6) return `${(bps / 1000).toFixed(0)} kbps`;
  return `${(bps / 1e6).toFixed(2)} Mbps`;
}

// "Ada Lovelace" → "AL", "Bob" → "B".
export function initials(name) {
  const parts = (name || '?').trim().split(/\s+/).filter(Boolean);
  const first = [...(parts[0] ?? '?')][0];
  const last = parts.length > 1 ? [...parts[parts.length - 1]][0] : '';
  return (first + last).toUpperCase();
}
