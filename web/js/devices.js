// Camera and microphone pickers. The lobby and the in-call settings panel
// each have a pair of <select data-kind="audio|video">; all are kept in sync.
import { el, toast } from './dom.js';

const selects = () => document.querySelectorAll('select[data-kind]');

export async function refreshDevicePickers(media) {
  const devices = await media.devices();
  for (const select of selects()) {
    const kind = select.dataset.kind;
    const what = kind === 'audio' ? 'microphone' : 'camera';
    const all = devices[kind];
    const list = all.filter((d) => d.deviceId);
    const current = kind === 'audio' ? media.audioId : media.videoId;
    let options;
    if (list.length) {
      options = list.map((d, i) => el('option', { value: d.deviceId }, d.label || `${what[0].toUpperCase()}${what.slice(1)} ${i + 1}`));
    } else if (all.length) {
      // There is one, but its name stays hidden until access is allowed.
      options = [el('option', { value: '' }, `Default ${what} (allow access to choose)`)];
    } else {
      options = [el('option', { value: '' }, `No ${what} found`)];
    }
    select.replaceChildren(...options);
    if (current && list.some((d) => d.deviceId === current)) select.value = current;
    select.disabled = !list.length;
  }
}

export function bindDevicePickers(media) {
  for (const select of selects()) {
    select.addEventListener('change', async () => {
      try {
        await media.useDevice(select.dataset.kind, select.value);
      } catch (err) {
        toast(err.message, 'error');
      }
      await refreshDevicePickers(media);
    });
  }
  navigator.mediaDevices?.addEventListener('devicechange', () => refreshDevicePickers(media));
  refreshDevicePickers(media);
}
