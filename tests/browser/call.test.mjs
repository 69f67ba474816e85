// Two-person calls in real Chromium against the real daemon: relay-only
// media, chat, a 5 MB file, screen sharing and a signaling drop.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  startDaemon, launchBrowser, openPage, joinCall, waitConnected, snapshot, peerIdOf, framesFrom,
  framesKeepComing, chatArrives, waitFor, withDiagnostics, EVENT_TIMEOUT_MS,
} from './harness.mjs';

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

// Two pages in `room`, connected to each other.
async function pair(room, pages, { relayOnly = false } = {}) {
  const a = await joinCall(browser, daemon, { room, name: 'Alice', relayOnly });
  pages.push(a);
  const b = await joinCall(browser, daemon, { room, name: 'Bob', relayOnly });
  pages.push(b);
  await Promise.all([waitConnected(a, 1), waitConnected(b, 1)]);
  return { a, b, idA: await peerIdOf(a), idB: await peerIdOf(b) };
}

// SHA-256 of a Blob in the page, with the browser's own crypto.subtle.
function defineSha256(page) {
  return page.evaluate(() => {
    window.sha256 = async (blob) => {
      const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
      return [...new Uint8Array(digest)].map((x) => x.toString(16).padStart(2, '0')).join('');
    };
  });
}


test('two relay-only peers connect through TURN, exchange video and chat', { timeout: 60000 }, async () => {
  const pages = [];
  await withDiagnostics(daemon, pages, async () => {
    const { a, b, idA, idB } = await pair('relay-room', pages, { relayOnly: true });

    // The selected candidate pair is relay on both ends, on both sides.
    const relayPorts = [];
    for (const page of [a, b]) {
      const [peer] = await snapshot(page);
      const { local, remote } = peer.stats.pair;
      assert.equal(local.type, 'relay', `${page.label}: local candidate ${JSON.stringify(local)}`);
      assert.equal(remote.type, 'relay', `${page.label}: remote candidate ${JSON.stringify(remote)}`);
      relayPorts.push(`${local.address}:${local.port}`);
    }

    // Video flows: frames decoded keep increasing on both sides.
    await Promise.all([framesKeepComing(a, idB), framesKeepComing(b, idA)]);

    await chatArrives(a, b, 'hello from Alice over a relayed data channel');
    assert.match(await b.textContent('#chat-log'), /hello from Alice/);

    // The daemon allocated those very relays.
    const allocations = daemon.log().split('\n').filter((l) => l.includes('allocation created'));
    assert.ok(allocations.length >= 2, `expected allocations in the log:\n${daemon.log()}`);
    for (const relay of relayPorts) {
      assert.ok(allocations.some((l) => l.includes(relay)), `no "allocation created" for relay ${relay}`);
    }
  });
});

test('a 5 MB file arrives byte for byte', { timeout: 60000 }, async () => {
  const pages = [];
  await withDiagnostics(daemon, pages, async () => {
    const { a, b } = await pair('file-room', pages);
    const bytes = randomBytes(5 * 1024 * 1024);
    const expected = createHash('sha256').update(bytes).digest('hex');
    // A file on disk: Playwright hands the browser its path, much faster
    // than pushing 5 MB through the DevTools protocol.
    const dir = mkdtempSync(join(tmpdir(), 'natbridge-file-'));
    const path = join(dir, 'random.bin');
    writeFileSync(path, bytes);

    await Promise.all([a, b].map(defineSha256));
    // The sender hashes what the file picker gave it; listening on document
    // in the capture phase runs before the page's own handler.
    await a.evaluate(() => {
      window.sentHash = new Promise((resolve) => {
        document.addEventListener('change', (e) => resolve(sha256(e.target.files[0])), { capture: true, once: true });
      });
    });
    await a.click('#btn-chat');
    await a.setInputFiles('#file-input', path);
    await waitFor(b, () => window.natbridge.received.length > 0, undefined, 45000);
    rmSync(dir, { recursive: true, force: true });

    const got = await b.evaluate(async () => {
      const f = window.natbridge.received[0];
      return { name: f.name, size: f.blob.size, hex: await sha256(f.blob) };
    });
    assert.deepEqual(got, { name: 'random.bin', size: bytes.length, hex: expected });
    assert.equal(await a.evaluate(() => window.sentHash), expected);
    // The sender's progress bar ended at "Sent".
    await waitFor(a, () => document.querySelector('#chat-log .msg-file .file-status')?.textContent === 'Sent');
  });
});

test('a screen share reaches the other peer, and stopping it restores the camera', { timeout: 60000 }, async () => {
  const pages = [];
  await withDiagnostics(daemon, pages, async () => {
    const { a, b, idA } = await pair('screen-room', pages);
    const inboundVideos = async () => (await snapshot(b)).find((p) => p.id === idA).stats.videoIn.length;
    // Stats lag the media: wait until they show what the test compares.
    const inboundVideosReach = async (want) => {
      let n = await inboundVideos();
      for (let i = 0; i < 100 && n !== want; i++) {
        await new Promise((r) => setTimeout(r, 100));
        n = await inboundVideos();
      }
      return n;
    };
    const camerasBefore = await inboundVideosReach(1);
    assert.equal(camerasBefore, 1, "Alice's camera shows in Bob's stats before the share");

    await a.click('#btn-screen');
    await waitFor(a, () => document.querySelector('#btn-screen').getAttribute('aria-pressed') === 'true');
    // Bob gets a new track, shown in its own tile, with real frames.
    await waitFor(b, (id) => {
      const v = document.querySelector(`.tile[data-key="${id}:screen"] video`);
      return v && v.videoWidth > 0 && v.srcObject.getVideoTracks().length === 1;
    }, idA);
    assert.equal(await inboundVideosReach(camerasBefore + 1), camerasBefore + 1);
    // The share is announced too (badge on Alice's camera tile).
    await waitFor(b, (id) => !document.querySelector(`.tile[data-key="${id}"] .badge-share`).hidden, idA);

    // Stopping from the browser's own "Stop sharing" bar ends the track;
    // the synthetic event takes the same path in the page.
    await a.evaluate(() => window.natbridge.media.screen.getVideoTracks()[0].dispatchEvent(new Event('ended')));
    await waitFor(b, (id) => !document.querySelector(`.tile[data-key="${id}:screen"]`), idA);
    assert.equal(await a.getAttribute('#btn-screen', 'aria-pressed'), 'false');
    // Alice's camera keeps playing at Bob's.
    await framesKeepComing(b, idA);
    assert.ok(await b.evaluate((id) => document.querySelector(`.tile[data-key="${id}"] video`).videoWidth > 0, idA));
  });
});

test('a dropped signaling connection resumes and the call goes on', { timeout: 60000 }, async () => {
  const pages = [];
  await withDiagnostics(daemon, pages, async () => {
    const { a, b, idA, idB } = await pair('resume-room', pages);
    const framesBefore = await framesFrom(b, idA);

    await a.evaluate(() => window.natbridge.signaling.ws.close());
    await waitFor(a, () => window.natbridge.signaling.connected && window.natbridge.signaling.resumed, undefined, EVENT_TIMEOUT_MS);
    assert.equal(await peerIdOf(a), idA, 'the resume kept the peer id');
    // Bob never saw Alice leave.
    assert.ok(await b.evaluate((id) => window.natbridge.peers.has(id), idA));

    await Promise.all([framesKeepComing(a, idB), framesKeepComing(b, idA)]);
    assert.ok((await framesFrom(b, idA)) > framesBefore);
    await chatArrives(a, b, 'still here after the reconnect');
    await chatArrives(b, a, 'welcome back');
  });
});

test('recording the call downloads a WebM file', { timeout: 60000 }, async () => {
  const pages = [];
  await withDiagnostics(daemon, pages, async () => {
    const { a, idB } = await pair('record-room', pages);
    await framesKeepComing(a, idB, 5);
    await a.click('#btn-record');
    await waitFor(a, () => !document.querySelector('#rec-status').hidden);
    await new Promise((r) => setTimeout(r, 2500));
    const [download] = await Promise.all([a.waitForEvent('download', { timeout: EVENT_TIMEOUT_MS }), a.click('#btn-record')]);
    assert.match(download.suggestedFilename(), /^natbridge-record-room-.*\.webm$/);
    const chunks = [];
    for await (const chunk of await download.createReadStream()) chunks.push(chunk);
    const file = Buffer.concat(chunks);
    // A WebM (EBML) file with more than a header in it.
    assert.equal(file.subarray(0, 4).toString('hex'), '1a45dfa3');
    assert.ok(file.length > 10000, `recording is only ${file.length} bytes`);
  });
});

test('clicking "Check camera" while the preview opens by itself opens the camera once', { timeout: 60000 }, async () => {
  const pages = [];
  await withDiagnostics(daemon, pages, async () => {
    const countCalls = async (context) => {
      await context.addInitScript(() => {
        window.__gumCalls = 0;
        const gum = MediaDevices.prototype.getUserMedia;
        MediaDevices.prototype.getUserMedia = function getUserMedia(...args) {
          window.__gumCalls += 1;
          return gum.apply(this, args);
        };
      });
    };
    const a = await openPage(browser, `${daemon.url}/r/preview-room`, 'Alice', { setup: countCalls });
    pages.push(a);
    // Two clicks in one turn, racing each other and the automatic preview.
    await a.evaluate(() => {
      const btn = document.querySelector('#preview-btn');
      btn.click();
      btn.click();
    });
    await waitFor(a, () => document.querySelector('#preview').videoWidth > 0);
    await a.waitForTimeout(500);
    assert.equal(await a.evaluate(() => window.__gumCalls), 1, 'getUserMedia calls');
  });
});
