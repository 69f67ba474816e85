// A three-person mesh in a room of capacity 3: every pair connects, a fourth
// person is turned away, and a screenshot of the call is kept. The tests run
// in order and share the three pages: the second needs the room full.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startDaemon, launchBrowser, joinCall, openPage, waitConnected, peerIdOf, framesKeepComing,
  chatArrives, waitFor, withDiagnostics, artifactPath,
} from './harness.mjs';

let daemon;
let browser;
const pages = [];

before(async () => {
  daemon = await startDaemon({ roomCapacity: 3 });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await daemon?.stop();
});

test('three peers form a full mesh', { timeout: 60000 }, async () => {
  await withDiagnostics(daemon, pages, async () => {
    for (const name of ['Ada Lovelace', 'Grace Hopper', 'Alan Turing']) {
      pages.push(await joinCall(browser, daemon, { room: 'mesh', name }));
    }
    await Promise.all(pages.map((p) => waitConnected(p, 2)));
    const ids = await Promise.all(pages.map(peerIdOf));
    // Every page receives video from both others.
    await Promise.all(
      pages.flatMap((page, i) => ids.filter((_, j) => j !== i).map((id) => framesKeepComing(page, id, 10))),
    );

    // The screenshot: a chat line, a muted microphone, route badges.
    const [ada, grace, alan] = pages;
    await alan.click('#btn-mic');
    const alanId = ids[2];
    await waitFor(ada, (id) => !document.querySelector(`.tile[data-key="${id}"] .badge-mic`).hidden, alanId);
    await chatArrives(grace, ada, 'Morning! Can everyone see my screen in a minute?');
    await ada.click('#btn-chat');
    await waitFor(ada, () => [...document.querySelectorAll('.tile:not(.tile-self) .badge-route')].every((b) => !b.hidden));
    await ada.screenshot({ path: artifactPath('call-3-peers.png') });
  }, { keepPages: true });
});

test('a fourth person gets "room full" when the capacity is 3', { timeout: 60000 }, async () => {
  assert.equal(pages.length, 3, 'needs the three peers of the previous test');
  await withDiagnostics(daemon, pages, async () => {
    const fourth = await openPage(browser, `${daemon.url}/r/mesh`, 'Fourth');
    pages.push(fourth);
    await fourth.fill('#name', 'Late Comer');
    await fourth.click('#join-btn');
    await waitFor(fourth, () => !document.querySelector('#lobby-error').hidden);
    assert.match(await fourth.textContent('#lobby-error'), /room is full \(3 people\)/);
    assert.equal(await fourth.isHidden('#call'), true);
    // The three in the room are undisturbed.
    for (const page of pages.slice(0, 3)) {
      assert.equal(await page.evaluate(() => window.natbridge.peers.size), 2);
    }
  });
});
