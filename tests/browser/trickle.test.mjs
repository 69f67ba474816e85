// The TURN self-test page against the real daemon: a relay with this
// server's credential, "authentication failed" with a wrong one, and "not
// reachable" for a port nothing listens on.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDaemon, launchBrowser, openPage, waitFor, withDiagnostics } from './harness.mjs';

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

async function gather(page) {
  await page.click('#gather');
  await waitFor(page, () => !document.querySelector('#verdict').hidden, undefined, 20000);
  return {
    verdict: await page.getAttribute('#verdict', 'data-verdict'),
    title: await page.textContent('#verdict-title'),
  };
}

test('/trickle: relay with a good credential, authentication failed with a wrong one', { timeout: 60000 }, async () => {
  const pages = [];
  await withDiagnostics(daemon, pages, async () => {
    const page = await openPage(browser, `${daemon.url}/trickle`, 'trickle');
    pages.push(page);
    // The page fills in this server's URLs and a fresh credential.
    await waitFor(page, () => document.querySelector('#credential').value !== '');
    assert.match(await page.inputValue('#urls'), new RegExp(`turn:127\\.0\\.0\\.1:${daemon.turnPort}\\?transport=udp`));
    await page.selectOption('#policy', 'relay');

    const good = await gather(page);
    assert.equal(good.verdict, 'ok');
    // One relay per TURN transport the server offers (UDP, and TCP in builds
    // that serve TURN over TCP).
    const transports = [...(await page.inputValue('#urls')).matchAll(/^turn:.*\?transport=(\w+)$/gm)].map((m) => m[1]);
    assert.equal(good.title, `Relay obtained over ${transports.map((t) => t.toUpperCase()).join(', ')}`);
    const rows = await page.$$eval('#candidates tr[data-type="relay"]', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
    assert.deepEqual(rows.map((r) => r[5]).sort(), [...transports].sort());
    for (const [, type, , address, port, relayProtocol, url] of rows) {
      assert.equal(type, 'relay');
      assert.equal(address, '127.0.0.1');
      assert.match(port, /^\d+$/);
      assert.equal(url, `turn:127.0.0.1:${daemon.turnPort}?transport=${relayProtocol}`);
    }

    await page.fill('#credential', 'not-the-right-credential');
    const bad = await gather(page);
    assert.deepEqual(bad, { verdict: 'bad', title: 'Authentication failed' });
    assert.equal(await page.$$eval('#errors tr[data-code="401"]', (rows) => rows.length) > 0, true);
    assert.equal(await page.$$eval('#candidates tr[data-type="relay"]', (rows) => rows.length), 0);
  });
});

test('/trickle: not reachable when nothing answers', { timeout: 60000 }, async () => {
  const pages = [];
  await withDiagnostics(daemon, pages, async () => {
    const page = await openPage(browser, `${daemon.url}/trickle`, 'trickle');
    pages.push(page);
    await waitFor(page, () => document.querySelector('#credential').value !== '');
    // The HTTP port answers TCP, never STUN over UDP.
    const port = new URL(daemon.url).port;
    await page.fill('#urls', `turn:127.0.0.1:${port}?transport=udp`);
    await page.selectOption('#policy', 'relay');
    const result = await gather(page);
    assert.deepEqual(result, { verdict: 'bad', title: 'Not reachable' });
  });
});
