// TURN over TLS and over TCP from real Chromium: two relay-only pages that
// may use a single TURN transport (?turn=tls or ?turn=tcp, see web/js/call.js)
// connect, and the selected candidate pair shows the relay was reached over
// that transport, as does the daemon's log.
//
// The certificate is self-signed, made at test time for localhost (harness.mjs,
// makeCertificate); Chromium is started with --ignore-certificate-errors,
// which its TURN-over-TLS sockets honour like its HTTPS ones.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startDaemon, launchBrowser, joinCall, waitConnected, snapshot, peerIdOf, framesKeepComing,
  chatArrives, withDiagnostics,
} from './harness.mjs';

let daemon;
let browser;

before(async () => {
  daemon = await startDaemon({ tls: true });
  browser = await launchBrowser({ extraArgs: ['--ignore-certificate-errors'] });
});

after(async () => {
  await browser?.close();
  await daemon?.stop();
});

// The scheme and transport a page's TURN URL must have under ?turn=.
const URL_OF = {
  tls: /^turns:localhost:\d+(\?transport=tcp)?$/,
  tcp: /^turn:localhost:\d+\?transport=tcp$/,
};

async function relayCallOver(transport, room) {
  const pages = [];
  await withDiagnostics(daemon, pages, async () => {
    const opts = { room, relayOnly: true, query: `?turn=${transport}` };
    const a = await joinCall(browser, daemon, { ...opts, name: 'Alice' });
    pages.push(a);
    const b = await joinCall(browser, daemon, { ...opts, name: 'Bob' });
    pages.push(b);

    // The filter left the page one TURN URL of that transport, no STUN.
    for (const page of [a, b]) {
      const urls = await page.evaluate(() => window.natbridge.call.iceServers.flatMap((s) => [].concat(s.urls)));
      assert.ok(urls.length === 1 && URL_OF[transport].test(urls[0]), `${page.label}: iceServers ${JSON.stringify(urls)}`);
      assert.match(await page.textContent('label:has(#relay-only)'), new RegExp(`TURN over ${transport.toUpperCase()} only`));
    }

    await Promise.all([waitConnected(a, 1), waitConnected(b, 1)]);
    const [idA, idB] = [await peerIdOf(a), await peerIdOf(b)];

    // Each side's selected pair starts at its relay, reached over `transport`.
    const relays = [];
    for (const page of [a, b]) {
      const [peer] = await snapshot(page);
      const { local, remote } = peer.stats.pair;
      assert.equal(local.type, 'relay', `${page.label}: local candidate ${JSON.stringify(local)}`);
      assert.equal(local.relayProtocol, transport, `${page.label}: local candidate ${JSON.stringify(local)}`);
      assert.equal(remote.type, 'relay', `${page.label}: remote candidate ${JSON.stringify(remote)}`);
      relays.push(`${local.address}:${local.port}`);
    }

    // Media and data flow over it.
    await Promise.all([framesKeepComing(a, idB, 5), framesKeepComing(b, idA, 5)]);
    await chatArrives(a, b, `hello over TURN/${transport}`);

    // The daemon made those relays for clients on `transport`. The latest
    // allocation of each relay address: an earlier test may have had it.
    const created = daemon.log().split('\n').filter((l) => l.includes('allocation created'));
    for (const relay of relays) {
      const line = created.findLast((l) => l.includes(`relay=[${relay}]`) || l.includes(`${relay},`) || l.includes(`, ${relay}]`));
      assert.ok(line, `no "allocation created" for relay ${relay}:\n${created.join('\n')}`);
      assert.ok(line.includes(`transport="${transport}"`), `relay ${relay} not over ${transport}: ${line}`);
    }
  });
}

test('relay-only peers with only a turns: URL connect over TURN/TLS', { timeout: 60000 }, async () => {
  await relayCallOver('tls', 'tls-room');
});

test('relay-only peers with only a turn:?transport=tcp URL connect over TURN/TCP', { timeout: 60000 }, async () => {
  await relayCallOver('tcp', 'tcp-room');
});
