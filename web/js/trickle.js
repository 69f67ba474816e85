// The TURN self-test page: gathers ICE candidates with the given servers,
// lists every candidate and every icecandidateerror, and ends with a verdict
// that names the likely cause when no relay comes back.
import { $, el } from './dom.js';
import { hydrateIcons } from './icons.js';

// Gathering against an unreachable server only ends after the browser's own
// long timeouts; by then the verdict is clear anyway.
const GATHER_TIMEOUT_MS = 10000;

hydrateIcons();

const form = $('#form');
const fields = { urls: $('#urls'), username: $('#username'), credential: $('#credential'), policy: $('#policy') };
let run = null;

async function loadServerCredentials() {
  showFormError('');
  try {
    const res = await fetch('/api/ice-servers', { cache: 'no-store' });
    const body = await res.json();
    if (!res.ok) throw new Error(body?.error?.reason || `HTTP ${res.status}`);
    fields.urls.value = body.uris.join('\n');
    fields.username.value = body.username;
    fields.credential.value = body.password;
  } catch (err) {
    showFormError(`Could not get credentials from this server: ${err.message}. Paste a URL, username and credential instead.`);
  }
}

function showFormError(text) {
  $('#form-error').textContent = text;
  $('#form-error').hidden = !text;
}

// Chrome leaves candidate.relayProtocol empty; the URL that produced the
// candidate says the same thing (turns: is TLS, ?transport=tcp is TCP).
function relayProtocolOf(cand) {
  if (cand.relayProtocol) return cand.relayProtocol;
  if (cand.type !== 'relay' || !cand.url) return '';
  if (/^turns:/i.test(cand.url)) return 'tls';
  return /[?&]transport=tcp/i.test(cand.url) ? 'tcp' : 'udp';
}

function addRow(table, cells) {
  const row = el('tr', {}, cells.map((c) => el('td', {}, c ?? '')));
  table.querySelector('tbody').append(row);
  return row;
}

function setVerdict(kind, title, text) {
  const v = $('#verdict');
  v.hidden = false;
  v.className = `verdict verdict-${kind}`;
  v.dataset.verdict = kind;
  $('#verdict-title').textContent = title;
  $('#verdict-text').textContent = text;
}

const PRIVATE_V4 = /^(10\.|127\.|169\.254\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.)/;

// The verdict, from what the gathering produced.
function judge({ candidates, errors, turnUrls, timedOut }) {
  const relays = candidates.filter((c) => c.type === 'relay');
  const srflx = candidates.filter((c) => c.type === 'srflx');
  if (relays.length) {
    const got = new Set(relays.map(relayProtocolOf));
    // A fixed order: relays arrive in whatever order the allocations finish.
    const protos = ['udp', 'tcp', 'tls'].filter((p) => got.has(p)).map((p) => p.toUpperCase()).join(', ');
    const privateRelay = relays.find((c) => PRIVATE_V4.test(c.address || ''));
    const note = privateRelay
      ? ` Note: the relay address ${privateRelay.address} is private or loopback, so only clients on this network can reach it; set turn.external_ip on the server.`
      : '';
    return ['ok', `Relay obtained over ${protos}`, `The TURN server allocated a relay (${relays.map((c) => `${c.address}:${c.port}`).join(', ')}). Calls will connect even when both sides are behind strict NATs.${note}`];
  }
  const auth = errors.find((e) => e.errorCode === 401);
  if (auth) {
    return ['bad', 'Authentication failed', `The TURN server answered "${auth.errorCode} ${auth.errorText}": it does not accept this username and credential. Check that they were made with one of the server's auth.secrets, have not expired (the username starts with the expiry time) and that the clocks agree.`];
  }
  const refused = errors.find((e) => e.errorCode >= 300 && e.errorCode < 700);
  if (refused) {
    return ['bad', `TURN refused the allocation (${refused.errorCode})`, `The server answered "${refused.errorCode} ${refused.errorText}". It is reachable and the credential may be fine, but it would not allocate (quota, capacity or policy).`];
  }
  if (srflx.length && turnUrls.length) {
    return ['bad', 'Authentication failed', 'The server answered STUN (a server-reflexive candidate came back) but gave no relay: the TURN credential was most likely refused.'];
  }
  if (srflx.length) {
    return ['warn', 'STUN works, no TURN to test', 'A server-reflexive candidate came back. Add a turn: URL with a username and credential to test relaying.'];
  }
  const detail = timedOut ? `Nothing came back within ${GATHER_TIMEOUT_MS / 1000} s.` : 'Nothing came back from the server.';
  return ['bad', 'Not reachable', `${detail} Check the host and port in the URL, that the server runs, and that a firewall lets UDP (or TCP for ?transport=tcp) through to it.`];
}

async function gather() {
  run?.stop();
  showFormError('');
  const urls = fields.urls.value.split(/\s+/).filter(Boolean);
  if (!urls.length) {
    showFormError('Enter at least one stun:, turn: or turns: URL.');
    return;
  }
  const turnUrls = urls.filter((u) => /^turns?:/i.test(u));
  const server = { urls };
  if (fields.username.value || fields.credential.value) {
    server.username = fields.username.value;
    server.credential = fields.credential.value;
  }
  let pc;
  try {
    pc = new RTCPeerConnection({ iceServers: [server], iceTransportPolicy: fields.policy.value, iceCandidatePoolSize: 0 });
  } catch (err) {
    showFormError(`The browser refused this configuration: ${err.message}`);
    return;
  }

  for (const t of ['#candidates', '#errors']) $(`${t} tbody`).replaceChildren();
  $('#no-candidates').hidden = false;
  $('#no-errors').hidden = false;
  $('#verdict').hidden = true;
  const state = $('#gather-state');
  state.textContent = 'gathering…';
  $('#gather').disabled = true;

  const t0 = performance.now();
  const ms = () => `${Math.round(performance.now() - t0)} ms`;
  const result = { candidates: [], errors: [], turnUrls, timedOut: false };
  let timer = 0;
  const finish = (timedOut) => {
    if (run?.pc !== pc) return;
    clearTimeout(timer);
    result.timedOut = timedOut;
    pc.close();
    run = null;
    state.textContent = timedOut ? 'timed out' : 'complete';
    $('#gather').disabled = false;
    setVerdict(...judge(result));
  };
  run = { pc, stop: () => finish(false) };

  pc.onicecandidate = ({ candidate }) => {
    if (!candidate) {
      finish(false);
      return;
    }
    if (!candidate.candidate) return;
    result.candidates.push(candidate);
    $('#no-candidates').hidden = true;
    const row = addRow($('#candidates'), [ms(), candidate.type, candidate.protocol, candidate.address, String(candidate.port ?? ''), relayProtocolOf(candidate), candidate.url || '']);
    row.dataset.type = candidate.type;
  };
  pc.onicecandidateerror = (e) => {
    result.errors.push(e);
    $('#no-errors').hidden = true;
    const local = e.address ? `${e.address}:${e.port ?? ''}` : '';
    addRow($('#errors'), [ms(), String(e.errorCode), e.errorText, e.url, local]).dataset.code = String(e.errorCode);
  };
  timer = setTimeout(() => finish(true), GATHER_TIMEOUT_MS);

  // A data channel is enough to make the browser gather.
  pc.createDataChannel('probe');
  try {
    await pc.setLocalDescription();
  } catch (err) {
    showFormError(`Could not start gathering: ${err.message}`);
    finish(false);
  }
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  gather();
});
$('#reload').addEventListener('click', loadServerCredentials);
loadServerCredentials();
