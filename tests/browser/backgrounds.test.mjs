// Background blur and pictures in real Chromium against the real daemon:
// the segmentation model and its WebAssembly come from the daemon (web/vendor)
// and nowhere else, the processed video reaches the other peer through
// replaceTrack, turning it off restores the camera track, and nothing leaks.
//
// Chromium's fake camera shows a green frame with a moving pac-man, corner
// squares and a timestamp, not a person: the model finds little or no
// "person" in it, so the background replaces (nearly) the whole frame. That
// is what these tests measure, on the frames the other peer decodes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startDaemon, launchBrowser, openPage, joinCall, waitConnected, peerIdOf, framesKeepComing, waitFor,
  withDiagnostics, artifactPath, EVENT_TIMEOUT_MS,
} from './harness.mjs';

// Loading the model and compiling its shaders takes seconds on a busy CI
// machine with software WebGL.
const EFFECT_TIMEOUT_MS = 60000;

let daemon;
let browser;

before(async () => {
  daemon = await startDaemon();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await daemon?.stop();
});

// Every page of these tests runs with the network cut off except for the
// daemon: a request to any other host is refused and remembered, and so is
// any WebSocket. It also keeps every track the page's code creates
// (getUserMedia, canvas capture, clone) in window.__tracks, so a test can
// count the live ones.
function isolate(requests, { block = [] } = {}) {
  const daemonHost = new URL(daemon.url).host;
  return async (context) => {
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      const local = url.host === daemonHost;
      requests.push({ url: url.href, local });
      if (!local || block.some((re) => re.test(url.pathname))) return route.abort();
      return route.continue();
    });
    context.on('page', (page) => page.on('websocket', (ws) => requests.push({ url: ws.url(), local: new URL(ws.url()).host === daemonHost })));
    await context.addInitScript(() => {
      window.__tracks = [];
      const keep = (stream) => {
        for (const t of stream.getTracks()) window.__tracks.push(t);
        return stream;
      };
      const gum = MediaDevices.prototype.getUserMedia;
      MediaDevices.prototype.getUserMedia = async function getUserMedia(...args) {
        return keep(await gum.apply(this, args));
      };
      const capture = HTMLCanvasElement.prototype.captureStream;
      HTMLCanvasElement.prototype.captureStream = function captureStream(...args) {
        return keep(capture.apply(this, args));
      };
      const clone = MediaStreamTrack.prototype.clone;
      MediaStreamTrack.prototype.clone = function cloneTrack() {
        const t = clone.call(this);
        window.__tracks.push(t);
        return t;
      };
    });
  };
}

function assertOnlyDaemon(requests) {
  const foreign = requests.filter((r) => !r.local).map((r) => r.url);
  assert.deepEqual(foreign, [], 'requests to hosts other than the daemon');
  // The model and its runtime came from the daemon.
  for (const file of ['selfie_segmentation_landscape.tflite', 'selfie_segmentation_solution_simd_wasm_bin.wasm']) {
    assert.ok(requests.some((r) => r.url.endsWith(`/vendor/selfie_segmentation/${file}`)), `${file} was not loaded from the daemon`);
  }
}

async function pair(room, pages, requests) {
  const a = await joinCall(browser, daemon, { room, name: 'Alice', setup: isolate(requests) });
  pages.push(a);
  const b = await joinCall(browser, daemon, { room, name: 'Bob', setup: isolate(requests) });
  pages.push(b);
  await Promise.all([waitConnected(a, 1), waitConnected(b, 1)]);
  return { a, b, idA: await peerIdOf(a), idB: await peerIdOf(b) };
}

// Chooses a background in the settings panel, as a person would, and waits
// until the effect is on and its track is what the peer connection sends.
async function chooseBackground(page, label) {
  if ((await page.getAttribute('#btn-settings', 'aria-expanded')) !== 'true') await page.click('#btn-settings');
  await page.click(`#bg-settings .bg-option[title="${label}"]`);
  if (label === 'None') return;
  await waitFor(page, () => window.natbridge.media.effectState.state !== 'loading', undefined, EFFECT_TIMEOUT_MS);
  assert.equal(await page.evaluate(() => window.natbridge.media.effectState.state), 'on', await page.textContent('#bg-settings .bg-status'));
}

// What page's peer connection sends as video, and the tracks it knows.
// The media state changes at once and the sender's replaceTrack settles a
// moment later (a CI run read the sender in between), so this first waits,
// a bounded time, for the sender to carry what the page publishes; if it
// never does, the caller's assertions say so.
async function sending(page) {
  await waitFor(page, () => {
    const [peer] = window.natbridge.peers.values();
    return peer.senders.video.track === window.natbridge.media.videoTrack;
  }).catch(() => {});
  return page.evaluate(() => {
    const [peer] = window.natbridge.peers.values();
    const media = window.natbridge.media;
    return {
      sent: peer.senders.video.track?.id ?? null,
      device: media.deviceVideo?.id ?? null,
      effect: media.effect?.track.id ?? null,
      live: window.__tracks.filter((t) => t.readyState === 'live').map((t) => `${t.kind}:${t.id}`),
      created: window.__tracks.length,
    };
  });
}

// The other peer's video as Bob decodes it, scaled to w x h: RGBA bytes.
function remoteFrame(page, peerId, w = 160, h = 90) {
  return page.evaluate(
    ([id, w, h]) => {
      const video = document.querySelector(`.tile[data-key="${id}"] video`);
      const c = document.createElement('canvas');
      c.width = w;
      c.height = h;
      const g = c.getContext('2d', { willReadFrequently: true });
      g.drawImage(video, 0, 0, w, h);
      return Array.from(g.getImageData(0, 0, w, h).data);
    },
    [peerId, w, h],
  );
}

// Sharp edges in the top fifth of the frame: pixels whose brightness jumps
// by more than `step` to the next pixel right or below. There the fake
// camera has its timestamp and two corner squares, hundreds of such pixels;
// a blur spreads each jump over many pixels, each too small to count. (The
// pac-man in the middle is left out: the model may take part of it for a
// person and keep it sharp, as it should.)
function sharpEdges(rgba, w, h, step = 24) {
  const luma = (i) => 0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2];
  let n = 0;
  for (let y = 0; y < Math.floor(h / 5); y += 1) {
    for (let x = 0; x < w - 1; x += 1) {
      const i = (y * w + x) * 4;
      if (Math.abs(luma(i) - luma(i + 4)) > step || Math.abs(luma(i) - luma(i + w * 4)) > step) n += 1;
    }
  }
  return n;
}

// The share of pixels of `rgba` within `tolerance` (RGB distance) of the
// same pixel of `expected`.
function matching(rgba, expected, tolerance = 60) {
  let hits = 0;
  const pixels = rgba.length / 4;
  for (let i = 0; i < rgba.length; i += 4) {
    const d = Math.hypot(rgba[i] - expected[i], rgba[i + 1] - expected[i + 1], rgba[i + 2] - expected[i + 2]);
    if (d <= tolerance) hits += 1;
  }
  return hits / pixels;
}

// A bundled picture drawn the way background.js draws it (cover), w x h.
function pictureFrame(page, src, w = 160, h = 90) {
  return page.evaluate(
    async ([src, w, h]) => {
      const img = new Image();
      img.src = src;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = w;
      c.height = h;
      const g = c.getContext('2d', { willReadFrequently: true });
      const scale = Math.max(w / img.naturalWidth, h / img.naturalHeight);
      const iw = img.naturalWidth * scale;
      const ih = img.naturalHeight * scale;
      g.drawImage(img, (w - iw) / 2, (h - ih) / 2, iw, ih);
      return Array.from(g.getImageData(0, 0, w, h).data);
    },
    [src, w, h],
  );
}

// A few frames for the new content to be encoded, sent and decoded.
async function settle(b, idA) {
  await framesKeepComing(b, idA, 4);
}

test('blur reaches the other peer: frames keep coming, visibly blurred', { timeout: 150000 }, async () => {
  const pages = [];
  const requests = [];
  await withDiagnostics(daemon, pages, async () => {
    const { a, b, idA } = await pair('blur-room', pages, requests);
    await settle(b, idA);
    const sharp = sharpEdges(await remoteFrame(b, idA, 320, 180), 320, 180);

    await chooseBackground(a, 'Strong blur');
    const s = await sending(a);
    assert.equal(s.sent, s.effect, 'the peer connection sends the effect track');
    // The other peer keeps decoding frames after the switch.
    await settle(b, idA);
    await framesKeepComing(b, idA, 8);
    const blurred = sharpEdges(await remoteFrame(b, idA, 320, 180), 320, 180);
    console.log(`sharp edge pixels at Bob: camera ${sharp}, strong blur ${blurred}`);
    assert.ok(sharp > 100, `the camera frame has few sharp edges to begin with: ${sharp}`);
    assert.ok(blurred < sharp * 0.25, `blur did not soften the frame: ${sharp} -> ${blurred}`);

    // The stats panel shows the effect's time per frame.
    await a.click('#tab-stats');
    await waitFor(a, () => /ms per frame/.test(document.querySelector('#panel-stats [data-peer="self"]')?.textContent ?? ''));
    await b.screenshot({ path: artifactPath('backgrounds-blur-remote.png') });
    await a.screenshot({ path: artifactPath('backgrounds-blur-stats.png') });
    await a.click('#tab-settings');
    await a.screenshot({ path: artifactPath('backgrounds-blur-settings.png') });
    assertOnlyDaemon(requests);
  });
});

test('a bundled picture chosen on the join screen replaces the background the other peer sees', { timeout: 150000 }, async () => {
  const pages = [];
  const requests = [];
  await withDiagnostics(daemon, pages, async () => {
    // Bob first, so Alice's processed track goes out in her first offer.
    const b = await joinCall(browser, daemon, { room: 'picture-room', name: 'Bob', setup: isolate(requests) });
    pages.push(b);
    const a = await openPage(browser, `${daemon.url}/r/picture-room`, 'Alice', { setup: isolate(requests) });
    pages.push(a);
    // The preview may start by itself (permission already granted) at any
    // moment, hiding the button: check and click in one step in the page.
    await waitFor(a, () => {
      const btn = document.querySelector('#preview-btn');
      if (!btn.hidden) btn.click();
      return document.querySelector('#preview').videoWidth > 0;
    });
    await a.click('#bg-lobby .bg-option[title="Lagoon"]');
    await waitFor(a, () => window.natbridge.media.effectState.state !== 'loading', undefined, EFFECT_TIMEOUT_MS);
    assert.equal(await a.evaluate(() => window.natbridge.media.effectState.state), 'on');
    // The preview shows the processed video.
    assert.ok(await a.evaluate(() => document.querySelector('#preview').srcObject.getVideoTracks()[0] === window.natbridge.media.effect.track));
    await a.fill('#name', 'Alice');
    await a.click('#join-btn');
    await a.waitForSelector('#call:not([hidden])', { timeout: EVENT_TIMEOUT_MS });
    await Promise.all([waitConnected(a, 1), waitConnected(b, 1)]);
    const idA = await peerIdOf(a);
    const s = await sending(a);
    assert.equal(s.sent, s.effect, 'the first offer already carries the effect track');
    // The settings panel shows the same choice.
    await a.click('#btn-settings');
    assert.ok(await a.isChecked('#bg-settings input[value="image:lagoon"]'));

    await settle(b, idA);
    const lagoon = await pictureFrame(b, '/img/backgrounds/lagoon.svg');
    const withPicture = matching(await remoteFrame(b, idA), lagoon);
    await chooseBackground(a, 'None');
    await waitFor(a, () => window.natbridge.media.effectState.state === 'off');
    await settle(b, idA);
    const withCamera = matching(await remoteFrame(b, idA), lagoon);
    console.log(`pixels matching the picture at Bob: with it ${withPicture.toFixed(2)}, camera only ${withCamera.toFixed(2)}`);
    assert.ok(withPicture >= 0.5, `the picture's colours did not reach Bob: ${withPicture}`);
    assert.ok(withCamera <= 0.2, `the camera alone matched the picture: ${withCamera}`);
    assertOnlyDaemon(requests);
  });
});

test('turning the effect off restores the camera track; switching back and forth leaks no track', { timeout: 180000 }, async () => {
  const pages = [];
  const requests = [];
  await withDiagnostics(daemon, pages, async () => {
    const { a, b, idA } = await pair('switch-room', pages, requests);
    const original = await sending(a);
    assert.equal(original.sent, original.device);
    assert.equal(original.live.length, 2, `live tracks before: ${original.live}`);

    // Waiting for each effect, then switching without waiting (a choice
    // made while the previous one is still starting).
    for (const label of ['Light blur', 'None', 'Dusk', 'Strong blur', 'None']) await chooseBackground(a, label);
    for (const label of ['Light blur', 'None', 'Studio', 'None', 'Strong blur', 'Lagoon', 'None']) {
      await a.click(`#bg-settings .bg-option[title="${label}"]`);
    }
    await waitFor(a, () => window.natbridge.media.effectState.state === 'off' && !window.natbridge.media.effect);

    const after = await sending(a);
    assert.equal(after.sent, original.device, 'the camera track is sent again');
    assert.equal(after.device, original.device, 'the camera itself was never reopened');
    assert.deepEqual(after.live.sort(), original.live.sort(), 'only the microphone and the camera stay live');
    assert.ok(after.created > original.created + 3, `effects made tracks: ${after.created}`);
    // Audio went untouched all along.
    assert.ok(await a.evaluate(() => window.natbridge.peers.values().next().value.senders.audio.track === window.natbridge.media.audioTrack));

    // One effect on: exactly one more live track, the one being sent.
    await chooseBackground(a, 'Light blur');
    const on = await sending(a);
    assert.equal(on.live.length, 3, `live tracks with the effect on: ${on.live}`);
    assert.ok(on.live.includes(`video:${on.sent}`));
    await framesKeepComing(b, idA, 5);
    assertOnlyDaemon(requests);
  });
});

test('a model that does not load leaves the call unprocessed, and the menu says so', { timeout: 90000 }, async () => {
  const pages = [];
  const requests = [];
  await withDiagnostics(daemon, pages, async () => {
    const a = await joinCall(browser, daemon, { room: 'broken-room', name: 'Alice', setup: isolate(requests, { block: [/\.tflite$/] }) });
    pages.push(a);
    const b = await joinCall(browser, daemon, { room: 'broken-room', name: 'Bob', setup: isolate(requests) });
    pages.push(b);
    await Promise.all([waitConnected(a, 1), waitConnected(b, 1)]);
    const idA = await peerIdOf(a);
    const before = await sending(a);

    await a.click('#btn-settings');
    await a.click('#bg-settings .bg-option[title="Light blur"]');
    await waitFor(a, () => window.natbridge.media.effectState.state === 'failed', undefined, EFFECT_TIMEOUT_MS);
    assert.match(await a.textContent('#bg-settings .bg-status'), /unavailable/);
    assert.ok(await a.isChecked('#bg-settings input[value="none"]'), 'the menu is back on None');
    const after = await sending(a);
    assert.equal(after.sent, before.device, 'the camera goes out as it is');
    assert.deepEqual(after.live.sort(), before.live.sort());
    await framesKeepComing(b, idA, 10);
    assert.deepEqual(requests.filter((r) => !r.local), []);
  });
});
