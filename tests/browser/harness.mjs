// Harness for the browser tests: starts the real natbridge daemon on free
// loopback ports with a temporary config, launches Debian's Chromium through
// playwright-core, and offers bounded waits. Nothing here mocks WebRTC: the
// pages talk to the daemon's signaling and TURN like any browser would.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const ARTIFACTS = join(REPO, 'test-artifacts');
const BIN = resolve(REPO, process.env.NATBRIDGE_BIN || 'target/release/natbridge');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const SECRET = 'browser-test-secret';

// Every wait is bounded so a broken build fails in seconds, not at the CI
// job's timeout. These are generous: the CI machine has two slow cores.
const STARTUP_TIMEOUT_MS = 20000;
export const CONNECT_TIMEOUT_MS = 25000;
export const EVENT_TIMEOUT_MS = 15000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Listening ports come from below Linux's ephemeral range (32768+), where
// Chromium's and every other client's outgoing sockets get their ports: a
// port picked from there can be taken by a connection between our check and
// the daemon's bind. Relay windows start at 20000.
const LISTEN_MIN = 10000;
const LISTEN_SPAN = 10000;
// Walked in order from a random start, so one process never picks a port twice.
let nextListen = Math.floor(Math.random() * LISTEN_SPAN);

function tcpPortFree(port, ip) {
  return new Promise((ok) => {
    const srv = createServer();
    srv.once('error', () => ok(false));
    srv.listen(port, ip, () => srv.close(() => ok(true)));
  });
}

function udpPortFree(port, ip) {
  return new Promise((ok) => {
    const sock = createSocket(ip.includes(':') ? 'udp6' : 'udp4');
    sock.once('error', () => ok(false));
    sock.bind(port, ip, () => sock.close(() => ok(true)));
  });
}

async function freeListenPort(ip, { udp }) {
  for (let i = 0; i < LISTEN_SPAN; i += 1) {
    const port = LISTEN_MIN + (nextListen % LISTEN_SPAN);
    nextListen += 1;
    if ((await tcpPortFree(port, ip)) && (!udp || (await udpPortFree(port, ip)))) return port;
  }
  throw new Error(`no free listening port on ${ip} in ${LISTEN_MIN}-${LISTEN_MIN + LISTEN_SPAN - 1}`);
}

function freeTcpPort(ip = '127.0.0.1') {
  return freeListenPort(ip, { udp: false });
}

// TURN listens on the same port over UDP and, in builds with TURN over TCP,
// over TCP too: find a port free for both.
function freeTurnPort(ip) {
  return freeListenPort(ip, { udp: true });
}

// A random window of relay ports below Linux's ephemeral range (32768+,
// where the browser's own sockets live). A port some other process holds is
// no problem: the daemon skips it and tries another.
function relayWindow() {
  const min = 20000 + Math.floor(Math.random() * 500) * 20;
  return { min, max: min + 199 };
}

// A throwaway self-signed certificate (P-256) for localhost and 127.0.0.1,
// made with the openssl command line in `dir`. Returns the PEM paths.
export function makeCertificate(dir) {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-addext', 'extendedKeyUsage=serverAuth',
    '-keyout', key, '-out', cert,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  return { cert, key };
}

// Daemons still running when the test process exits are killed.
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

const ANSI = /\x1b\[[0-9;]*m/g;

// tls: also serve TURN over TLS on a free port, with a certificate made
// here for localhost (see makeCertificate); the URLs handed to the pages then
// name localhost, the name on the certificate, which is what the browser
// checks. The TLS port is daemon.tlsPort, the certificate daemon.cert.
// turnIp: where TURN listens and relays (the web pages stay on 127.0.0.1,
// a secure context). turnToml: more [turn] keys. extraToml: appended to the
// config, e.g. a [cluster] section.
export async function startDaemon({ roomCapacity = 8, tls = false, turnIp = '127.0.0.1', turnToml = '', extraToml = '' } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'natbridge-browser-'));
  const httpPort = await freeTcpPort();
  const turnPort = await freeTurnPort(turnIp);
  const tlsPort = tls ? await freeTcpPort() : null;
  const certificate = tls ? makeCertificate(dir) : null;
  const relay = relayWindow();
  const config = join(dir, 'config.toml');
  const tlsTurn = tls ? `tls_listen = ["127.0.0.1:${tlsPort}"]\n` : '';
  const tlsHttp = tls ? 'public_host = "localhost"\n' : '';
  const tlsSection = tls ? `\n[tls]\ncert = "${certificate.cert}"\nkey = "${certificate.key}"\n` : '';
  // Only what differs from the built-in defaults; [peers] stays default,
  // so relay-to-relay between two clients of this server must still work.
  writeFileSync(
    config,
    `[turn]
listen = ["${turnIp}:${turnPort}"]
relay_ip = "${turnIp}"
relay_port_min = ${relay.min}
relay_port_max = ${relay.max}
${tlsTurn}${turnToml}
[auth]
secrets = ["${SECRET}"]

[http]
listen = "127.0.0.1:${httpPort}"
${tlsHttp}
[signaling]
room_capacity = ${roomCapacity}
${tlsSection}
${extraToml}`,
  );
  const proc = spawn(BIN, ['serve', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  children.add(proc);
  let log = '';
  const collect = (chunk) => {
    log += chunk.toString().replace(ANSI, '');
  };
  proc.stdout.on('data', collect);
  proc.stderr.on('data', collect);
  let exited = null;
  proc.on('exit', (code, signal) => {
    exited = { code, signal };
    children.delete(proc);
  });
  proc.on('error', (err) => {
    exited = { error: err.message };
  });

  const url = `http://127.0.0.1:${httpPort}`;
  const daemon = {
    url,
    turnPort,
    tlsPort,
    relay,
    cert: certificate?.cert ?? null,
    log: () => log,
    async stop() {
      // The first SIGTERM starts draining, which waits for open allocations;
      // a second one ends the wait (config.toml, [service]).
      for (const signal of ['SIGTERM', 'SIGTERM', 'SIGKILL']) {
        if (exited) break;
        proc.kill(signal);
        for (let i = 0; i < 20 && !exited; i += 1) await sleep(100);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited) break;
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return daemon;
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
  await daemon.stop();
  throw new Error(`natbridge (${BIN}) did not become healthy: ${JSON.stringify(exited)}\n${log}`);
}

// A private redis-server on a free loopback port (Debian's package, which
// scripts/test.sh installs), for cluster tests: never the system service.
export async function startRedis() {
  const port = await freeTcpPort();
  const dir = mkdtempSync(join(tmpdir(), 'natbridge-redis-'));
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  children.add(proc);
  let exited = false;
  proc.on('exit', () => {
    exited = true;
    children.delete(proc);
  });
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    const up = await new Promise((ok) => {
      const sock = createConnection({ host: '127.0.0.1', port }, () => {
        sock.end('PING\r\n');
      });
      sock.once('data', (d) => ok(d.toString().startsWith('+PONG')));
      sock.once('error', () => ok(false));
    });
    if (up) break;
    if (exited || Date.now() > deadline) throw new Error('redis-server did not start');
    await sleep(50);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (!exited) proc.kill('SIGKILL');
      for (let i = 0; i < 20 && !exited; i += 1) await sleep(50);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
];

// Playwright gives the browser a fresh temporary --user-data-dir; each page
// below also gets its own context (no shared storage), like separate people.
// extraArgs: more command-line switches, e.g. --ignore-certificate-errors.
export function launchBrowser({ extraArgs = [], env } = {}) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    timeout: STARTUP_TIMEOUT_MS,
    ...(env ? { env } : {}),
  });
}

// A page with its console kept, to print when a test fails. setup: awaited
// with the new context before the page loads (routes, init scripts).
export async function openPage(browser, url, label, { setup } = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  if (setup) await setup(context);
  const page = await context.newPage();
  page.consoleLog = [];
  page.label = label;
  page.on('console', (m) => page.consoleLog.push(`[${label}] ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => page.consoleLog.push(`[${label}] page error: ${e.message}`));
  await page.goto(url);
  return page;
}

// Opens the call demo and joins `room`; resolves once in the call.
// query: appended to the page's address, e.g. '?turn=tls'.
// setup: as for openPage.
export async function joinCall(browser, daemon, { room, name, relayOnly = false, query = '', setup }) {
  const page = await openPage(browser, `${daemon.url}/r/${room}${query}`, name, { setup });
  try {
    await page.fill('#name', name);
    if (relayOnly) await page.check('#relay-only', { force: true });
    await page.click('#join-btn');
    await page.waitForSelector('#call:not([hidden])', { timeout: EVENT_TIMEOUT_MS });
    return page;
  } catch (err) {
    // The caller never gets this page, so withDiagnostics cannot print it:
    // what the lobby shows and the console go into the error instead.
    const lobby = await page
      .evaluate(() => ({
        button: document.querySelector('#join-btn')?.textContent,
        error: document.querySelector('#lobby-error')?.textContent,
        preview: document.querySelector('#preview-text')?.textContent,
        media: window.natbridge?.media?.state,
        websocket: window.natbridge?.signaling?.ws?.readyState ?? 'none',
        joined: window.natbridge?.signaling?.joinedNow ?? false,
      }))
      .catch((e) => `unreadable: ${e.message}`);
    err.message += `\n${name}'s lobby: ${JSON.stringify(lobby)}\n${name}'s console:\n${page.consoleLog.join('\n')}`;
    await page.context().close().catch(() => {});
    throw err;
  }
}

// Polls `fn` (run in the page, sync or async) every 250 ms until it returns
// something truthy. Not page.waitForFunction: that does not await an async
// predicate, whose promise is truthy at once, so waitConnected and friends
// would return without waiting. An exception counts as "not yet" (getStats
// on a connection being replaced rejects, for one) and is reported if the
// time runs out.
export async function waitFor(page, fn, arg, timeout = EVENT_TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  let lastError = null;
  for (;;) {
    const left = Math.max(1, deadline - Date.now());
    let timer;
    try {
      const value = await Promise.race([
        page.evaluate(fn, arg),
        new Promise((r) => { timer = setTimeout(r, left); }),
      ]);
      if (value) return value;
    } catch (err) {
      if (page.isClosed()) throw err;
      lastError = err;
    } finally {
      clearTimeout(timer);
    }
    if (Date.now() >= deadline) {
      const why = lastError ? ` (last error: ${lastError.message})` : '';
      throw new Error(`waitFor: not true after ${timeout} ms${why}: ${fn.toString().slice(0, 300)}`);
    }
    await sleep(Math.min(250, deadline - Date.now()));
  }
}

// Waits until `page` has `count` peers, all in connectionState connected.
export function waitConnected(page, count) {
  return waitFor(
    page,
    async (n) => {
      const snap = await window.natbridge.snapshot();
      return snap.length === n && snap.every((p) => p.connectionState === 'connected');
    },
    count,
    CONNECT_TIMEOUT_MS,
  );
}

export const snapshot = (page) => page.evaluate(() => window.natbridge.snapshot());

// Frames decoded from `peerId` (all its video tracks) as seen by `page`.
export const framesFrom = (page, peerId) =>
  page.evaluate(async (id) => (await window.natbridge.snapshot()).find((p) => p.id === id)?.stats.framesDecoded ?? 0, peerId);

export const peerIdOf = (page) => page.evaluate(() => window.natbridge.signaling.peerId);

// Waits until the frames decoded from peerId grow by at least `by`.
export async function framesKeepComing(page, peerId, by = 15) {
  const start = await framesFrom(page, peerId);
  await waitFor(
    page,
    async ([id, target]) => ((await window.natbridge.snapshot()).find((p) => p.id === id)?.stats.framesDecoded ?? 0) >= target,
    [peerId, start + by],
  );
}

// Sends a chat message from `from` (opening its chat panel) and waits until
// `to` has it.
export async function chatArrives(from, to, text) {
  if ((await from.getAttribute('#btn-chat', 'aria-expanded')) !== 'true') await from.click('#btn-chat');
  await from.fill('#chat-input', text);
  await from.press('#chat-input', 'Enter');
  await waitFor(to, (t) => window.natbridge.chatLog.some((m) => m.text === t && m.from !== 'self'), text);
}

// Runs a test body; on failure prints the daemon log and the pages' consoles,
// which usually say what went wrong. The pages the body opens (pushed onto
// `pages`) are closed afterwards unless keepPages is set, so a failed test
// does not leave video calls running to slow down the next ones.
export async function withDiagnostics(daemon, pages, body, { keepPages = false } = {}) {
  try {
    await body();
  } catch (err) {
    const consoles = pages.flatMap((p) => p.consoleLog ?? []).join('\n');
    console.error(`---- natbridge log ----\n${daemon.log().slice(-20000)}\n---- browser consoles ----\n${consoles}`);
    throw err;
  } finally {
    if (!keepPages) await Promise.all(pages.map((p) => p.context().close()));
  }
}

export function artifactPath(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}
