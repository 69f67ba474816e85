// Entry point of the call demo: wires the lobby, the call, the call screen
// and the control bar together, and exposes window.natbridge for debugging
// and for the browser tests.
import { $, el, toast } from './dom.js';
import { hydrateIcons, setIcon } from './icons.js';
import { LocalMedia } from './media.js';
import { Call } from './call.js';
import { CallView } from './callview.js';
import { CallRecorder } from './recorder.js';
import { Lobby, roomLink } from './lobby.js';
import { bindDevicePickers } from './devices.js';
import { BackgroundPicker } from './backgroundpicker.js';
import { summarize } from './stats.js';

hydrateIcons();

const media = new LocalMedia();
const call = new Call(media);
const view = new CallView({ call, media, onUnread: () => markUnread() });
const recorder = new CallRecorder($('#grid'));
let room = '';
let sideTab = null;

const lobby = new Lobby({ media, onJoin: join });
bindDevicePickers(media);
const backgrounds = new BackgroundPicker(media);
backgrounds.mount($('#bg-lobby'), 'bg-lobby');
backgrounds.mount($('#bg-settings'), 'bg-settings');

async function join(opts) {
  setRelaySwitches(opts.relayOnly);
  await call.join(opts.room, opts.name, { relayOnly: opts.relayOnly });
  room = opts.room;
  lobby.hide();
  $('#call').hidden = false;
  $('#room-title').textContent = room;
  document.title = `${room} · natbridge`;
  // The query (e.g. ?turn=tls) stays, so a reload keeps the same filter.
  history.replaceState(null, '', `/r/${encodeURIComponent(room)}${location.search}`);
  view.start(opts.name);
  renderControls();
  // Keyboard users land on the controls, not on the vanished Join button.
  $('#btn-mic').focus();
}

async function leave(message) {
  if (recorder.recording) await stopRecording();
  call.leave();
  media.stop();
  view.stop();
  closeSide();
  $('#call').hidden = true;
  document.title = 'natbridge call';
  lobby.show(message);
}

call.on('ended', ({ message }) => leave(`You were disconnected: ${message}`));
// Leaving on pagehide tells the others at once, instead of after the
// server's resume grace period.
addEventListener('pagehide', () => {
  if (call.active) call.leave();
});

// ---- controls -------------------------------------------------------------

function setControl(id, { on, icon, label }) {
  const btn = $(id);
  btn.setAttribute('aria-pressed', String(on));
  btn.classList.toggle('ctl-off', !on);
  setIcon(btn.querySelector('[data-icon]'), icon);
  btn.querySelector('.ctl-label').textContent = label;
  btn.title = label;
}

function renderControls() {
  const s = media.state;
  setControl('#btn-mic', { on: s.audio, icon: s.audio ? 'mic' : 'mic-off', label: s.audio ? 'Mute' : 'Unmute' });
  $('#btn-mic').disabled = !media.audioTrack;
  setControl('#btn-cam', { on: s.video, icon: s.video ? 'cam' : 'cam-off', label: s.video ? 'Stop video' : 'Start video' });
  const share = $('#btn-screen');
  share.setAttribute('aria-pressed', String(s.screen));
  share.classList.toggle('ctl-active', s.screen);
  share.querySelector('.ctl-label').textContent = s.screen ? 'Stop sharing' : 'Share screen';
  const rec = $('#btn-record');
  rec.setAttribute('aria-pressed', String(recorder.recording));
  rec.classList.toggle('ctl-rec', recorder.recording);
  rec.querySelector('.ctl-label').textContent = recorder.recording ? 'Stop recording' : 'Record';
}

media.on('state', renderControls);

$('#btn-mic').addEventListener('click', () => media.setMic(!media.micOn));

$('#btn-cam').addEventListener('click', async () => {
  try {
    await media.setCamera(!media.videoTrack);
  } catch (err) {
    toast(err.message, 'error', 8000);
  }
});

// Phones and tablets cannot share their screen from a browser.
$('#btn-screen').hidden = !navigator.mediaDevices?.getDisplayMedia;
$('#btn-screen').addEventListener('click', async () => {
  if (media.sharing) {
    media.stopScreen();
    return;
  }
  try {
    await media.startScreen();
  } catch (err) {
    toast(err.message, 'error', 8000);
  }
});

$('#btn-leave').addEventListener('click', () => leave());

$('#copy-link').addEventListener('click', async () => {
  const link = roomLink(room);
  try {
    await navigator.clipboard.writeText(link);
    toast('Link copied: send it to the people you want to invite.', 'ok', 3000);
  } catch {
    toast(`Share this link: ${link}`, 'info', 15000);
  }
});

// ---- recording ------------------------------------------------------------

let recTimer = 0;

function startRecording() {
  recorder.start([media.camera, ...view.remoteStreams.values()]);
  const started = Date.now();
  $('#rec-status').hidden = false;
  recTimer = setInterval(() => {
    const s = Math.floor((Date.now() - started) / 1000);
    $('#rec-time').textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
  }, 1000);
  renderControls();
}

async function stopRecording() {
  clearInterval(recTimer);
  $('#rec-status').hidden = true;
  $('#rec-time').textContent = '0:00';
  const blob = await recorder.stop();
  renderControls();
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `natbridge-${room}-${new Date().toISOString().replace(/[:.]/g, '-')}.webm`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  toast('Recording saved to your downloads.', 'ok');
}

$('#btn-record').addEventListener('click', () => {
  try {
    if (recorder.recording) stopRecording();
    else startRecording();
  } catch (err) {
    toast(err.message, 'error');
  }
});

call.on('track', ({ stream, role }) => {
  if (recorder.recording && role === 'camera') recorder.addAudio(stream);
});

// ---- side panel (chat, stats, settings) -----------------------------------

const TABS = { chat: '#btn-chat', stats: '#btn-stats', settings: '#btn-settings' };

function openSide(tab) {
  sideTab = tab;
  $('#side').hidden = false;
  $('.stage').classList.add('with-side');
  for (const [name, btn] of Object.entries(TABS)) {
    $(btn).setAttribute('aria-expanded', String(name === tab));
    $(`#tab-${name}`).setAttribute('aria-selected', String(name === tab));
    $(`#panel-${name}`).hidden = name !== tab;
  }
  if (tab === 'chat') {
    $('#chat-unread').hidden = true;
    $('#chat-input').focus();
  }
}

function closeSide() {
  sideTab = null;
  $('#side').hidden = true;
  $('.stage').classList.remove('with-side');
  for (const btn of Object.values(TABS)) $(btn).setAttribute('aria-expanded', 'false');
}

function markUnread() {
  if (sideTab !== 'chat') $('#chat-unread').hidden = false;
}

for (const [name, btn] of Object.entries(TABS)) {
  $(btn).addEventListener('click', () => (sideTab === name ? closeSide() : openSide(name)));
  $(`#tab-${name}`).addEventListener('click', () => openSide(name));
}
$('#side-close').addEventListener('click', () => {
  const opener = sideTab && $(TABS[sideTab]);
  closeSide();
  opener?.focus();
});
document.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && sideTab) {
    const opener = $(TABS[sideTab]);
    closeSide();
    opener.focus();
  }
});

// The lobby and the settings panel each have a relay-only switch; their
// labels say when ?turn= limits the TURN transport (see call.js).
if (call.turnOnly) {
  for (const box of document.querySelectorAll('input[data-relay]')) {
    box.parentElement.append(el('span', { class: 'hint turn-filter' }, ` · TURN over ${call.turnOnly.toUpperCase()} only`));
  }
}

function setRelaySwitches(on) {
  for (const box of document.querySelectorAll('input[data-relay]')) box.checked = on;
}

for (const box of document.querySelectorAll('input[data-relay]')) {
  box.addEventListener('change', () => {
    setRelaySwitches(box.checked);
    if (!call.active) return;
    call.setRelayOnly(box.checked);
    toast(box.checked ? 'Relay only: reconnecting through TURN.' : 'Direct connections allowed again.', 'info', 3000);
  });
}

// ---- hooks for debugging and the browser tests ----------------------------

window.natbridge = {
  call,
  media,
  view,
  get signaling() {
    return call.signaling;
  },
  get peers() {
    return call.peers;
  },
  get received() {
    return view.received;
  },
  get chatLog() {
    return view.chatLog;
  },
  // A fresh stats summary of every peer connection.
  async snapshot() {
    const out = [];
    for (const [id, peer] of call.peers) {
      out.push({
        id,
        name: call.nameOf(id),
        connectionState: peer.pc.connectionState,
        stats: await summarize(peer.pc),
      });
    }
    return out;
  },
};
