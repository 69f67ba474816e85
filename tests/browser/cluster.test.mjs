// Cluster mode in real Chromium: two natbridge nodes sharing one private
// Redis. Pages whose signaling goes to different nodes make a relay-only
// call, and a browser sent away by a full node (300 Try Alternate)
// allocates on its sibling.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startDaemon, startRedis, launchBrowser, joinCall, waitConnected, snapshot, peerIdOf,
  framesKeepComing, chatArrives, withDiagnostics,
} from './harness.mjs';

let redis;
let browser;
const nodes = [];
// Addresses for the two nodes' TURN servers. run.sh makes a network
// namespace with two non-loopback addresses and runs this file in it:
// Chromium refuses to follow a 300 to a loopback address (a guard against
// redirects into the local host), so the redirect test needs real ones.
const IPS = (process.env.NATBRIDGE_CLUSTER_IPS || '127.0.0.1,127.0.0.1').split(',');
const LOOPBACK_ONLY = IPS[1].startsWith('127.');

// Both nodes relay on 127.0.0.1, so each takes the other's relay ports for
// its own address, which the default peer policy refuses (only its own live
// relays pass): [peers] allow lets them reach each other, as nodes on
// separate hosts do by default.
const cluster = () => `[peers]
allow = ["127.0.0.0/8", "${IPS[1].split('.').slice(0, 3).join('.')}.0/24"]

[cluster]
redis_url = "${redis.url}"
heartbeat_ms = 200
node_timeout_ms = 1000
`;

before(async () => {
  redis = await startRedis();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const n of nodes) await n.stop();
  await redis?.stop();
});

async function startNode(index, turnToml = '') {
  const node = await startDaemon({ turnIp: IPS[index], turnToml, extraToml: cluster() });
  nodes.push(node);
  return node;
}

// Waits until `node` counts `n` live nodes.
async function seesNodes(node, n) {
  const deadline = Date.now() + 15000;
  for (;;) {
    const text = await (await fetch(`${node.url}/metrics`)).text();
    if (new RegExp(`^natbridge_cluster_nodes ${n}$`, 'm').test(text)) return;
    if (Date.now() > deadline) throw new Error(`node ${node.url} does not see ${n} nodes:\n${text}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const inWindow = (port, { min, max }) => port >= min && port <= max;

// Both nodes, in one diagnostics dump.
const both = (a, b) => ({ log: () => `---- node A ----\n${a.log()}\n---- node B ----\n${b.log()}` });

test('pages on two nodes make a relay-only call, each through its own node', { timeout: 90000 }, async () => {
  const a = await startNode(0);
  const b = await startNode(1);
  // Gone from the cluster before the next test counts its nodes, whether
  // this one passed or not: a failure here must not fail the next one too.
  try {
    await seesNodes(a, 2);
    await seesNodes(b, 2);
    const pages = [];
    await withDiagnostics(both(a, b), pages, async () => {
      const alice = await joinCall(browser, a, { room: 'two-nodes', name: 'Alice', relayOnly: true });
      pages.push(alice);
      const bob = await joinCall(browser, b, { room: 'two-nodes', name: 'Bob', relayOnly: true });
      pages.push(bob);
      await Promise.all([waitConnected(alice, 1), waitConnected(bob, 1)]);
      const [idA, idB] = [await peerIdOf(alice), await peerIdOf(bob)];
      await Promise.all([framesKeepComing(alice, idB, 5), framesKeepComing(bob, idA, 5)]);
      await chatArrives(alice, bob, 'hello across two nodes');
      // Alice relays through node A, Bob through node B.
      for (const [page, node] of [[alice, a], [bob, b]]) {
        const [peer] = await snapshot(page);
        const { local, remote } = peer.stats.pair;
        assert.equal(local.type, 'relay', `${page.label}: ${JSON.stringify(local)}`);
        assert.equal(remote.type, 'relay', `${page.label}: ${JSON.stringify(remote)}`);
        assert.ok(inWindow(local.port, node.relay), `${page.label}'s relay ${local.port} is not node ${node.url}'s (${JSON.stringify(node.relay)})`);
      }
    });
  } finally {
    for (const n of [a, b]) await n.stop();
  }
});

const skipRedirect = LOOPBACK_ONLY && 'Chromium does not follow a 300 to a loopback address; tests/browser/run.sh runs this file in a network namespace (as root)';

test('a browser sent away by a full node (300 Try Alternate) allocates on its sibling', { timeout: 90000, skip: skipRedirect }, async () => {
  // Node A holds one allocation; both pages get their credentials and
  // iceServers (A's TURN address) from A.
  const a = await startNode(0, 'max_allocations = 1\n');
  const b = await startNode(1);
  await seesNodes(a, 2);
  const pages = [];
  await withDiagnostics(both(a, b), pages, async () => {
    const opts = { room: 'full-node', relayOnly: true, query: '?turn=udp' };
    const alice = await joinCall(browser, a, { ...opts, name: 'Alice' });
    pages.push(alice);
    const bob = await joinCall(browser, a, { ...opts, name: 'Bob' });
    pages.push(bob);
    await Promise.all([waitConnected(alice, 1), waitConnected(bob, 1)]);
    const [idA, idB] = [await peerIdOf(alice), await peerIdOf(bob)];
    await Promise.all([framesKeepComing(alice, idB, 5), framesKeepComing(bob, idA, 5)]);
    const relays = [];
    for (const page of [alice, bob]) {
      const [peer] = await snapshot(page);
      assert.equal(peer.stats.pair.local.type, 'relay', `${page.label}: ${JSON.stringify(peer.stats.pair.local)}`);
      relays.push(peer.stats.pair.local.port);
    }
    assert.ok(relays.some((p) => inWindow(p, b.relay)), `no page relays through node B: ${relays}`);
    const metrics = await (await fetch(`${a.url}/metrics`)).text();
    assert.match(metrics, /^natbridge_turn_try_alternate_total\{reason="capacity"\} [1-9]/m);
  });
});
