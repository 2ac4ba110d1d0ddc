// A page connected to two data views fails over between them, against real
// processes: one `nodb chronicler` and two `nodb dataview --app warehouse`
// following it, each on a loopback port chosen at run time, and headless
// Chromium. The page is served by the test from a third origin (its client
// modules the working tree's), which both data views allow with
// `--allow-origin`, so the stream and `GET /ready` are cross-origin as they
// would be for an app hosted apart from its data views.
//
// Asserted, twice (the data view in use is killed with SIGKILL, later the
// other while the first is back): the page moves to the survivor, its state
// equals the survivor's `GET /views/stock` at the log's head, every seq of
// the log reached the page exactly once (a snapshot at seq 0, then patches
// covering 1..=head without a gap or an overlap: no snapshot fallback), the
// page's own actions, some dispatched while it was offline, are each in the
// log exactly once and applied, and the page read a `/ready` of the survivor
// (CORS). Another client keeps dispatching (POST /actions at the chronicler)
// during each failover. Run after `cargo build -p nodb`:
//
//   node --test web/e2e/failover.test.js

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NODB_BIN, ROOT, dataDir, launchBrowser, readLog, stop } from './harness.js';

const WAIT = { timeout: 20_000 };

/** Every process started, for `after` to kill whatever is left. */
const procs = new Set();
let browser;
let pageServer;
/** The page's origin, allowed by both data views. */
let origin;
let chronicler;
/** Data views `a` and `b`: `{ url, proc, args }`. */
const views = {};
let otherNumber = 0;

/**
 * Starts `nodb ARGS…` and resolves once it prints `<what> listening on URL`:
 * `{ url, proc, args, stderr() }`.
 */
function startService(what, args) {
  return new Promise((ok, fail) => {
    const proc = spawn(NODB_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.add(proc);
    proc.on('exit', () => procs.delete(proc));
    let out = '';
    let err = '';
    proc.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => fail(new Error(`nodb ${what} did not start:\n${out}\n${err}`)), 30_000);
    proc.on('error', (e) => { clearTimeout(timer); fail(new Error(`cannot start ${NODB_BIN}: ${e.message}`)); });
    proc.on('exit', (code) => { clearTimeout(timer); fail(new Error(`nodb ${what} exited (${code}):\n${err}`)); });
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(new RegExp(`nodb ${what} listening on (http://\\S+)`));
      if (m) {
        clearTimeout(timer);
        ok({ url: m[1], proc, args, stderr: () => err });
      }
    });
  });
}

/** Starts a warehouse data view on `listen` (port 0: any), keeping its snapshots in `snapshots`. */
function startView(listen, snapshots) {
  return startService('dataview', [
    'dataview', '--app', 'warehouse', '--chronicler', chronicler.url, '--listen', listen,
    '--snapshots', snapshots, '--allow-origin', origin,
  ]);
}

/** Resolves once `GET <url>/ready` answers 200 with `seq` at least `seq`. */
async function whenReady(url, seq = 0) {
  const deadline = Date.now() + WAIT.timeout;
  for (;;) {
    const res = await fetch(`${url}/ready`).catch(() => null);
    const body = await res?.json().catch(() => null);
    if (res?.status === 200 && body.seq >= seq) return;
    if (Date.now() > deadline) throw new Error(`${url} not ready at seq ${seq}: ${res?.status} ${JSON.stringify(body)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The chronicler's head. */
async function head() {
  return (await (await fetch(`${chronicler.url}/head`)).json()).head;
}

/** Another client's action, straight to the chronicler; resolves with its seq. */
async function otherAction(quantity) {
  const action = { id: `other:${++otherNumber}`, type: 'stock/corrected', payload: { product: 'pear', location: 'shelf', quantity } };
  const res = await fetch(`${chronicler.url}/actions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(action) });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()).acks[0].seq;
}

/** The page's script: a store on both data views, recording its updates, moves and `/ready` answers. */
const APP = `
const readyAnswers = [];
const realFetch = window.fetch.bind(window);
window.fetch = (url, init) => realFetch(url, init).then(
  (res) => { readyAnswers.push([String(url), res.status]); return res; },
  (e) => { readyAnswers.push([String(url), 'failed']); throw e; },
);
window.readyAnswers = readyAnswers;
const { connect } = await import('/nodb.js');
const urls = JSON.parse(new URLSearchParams(location.search).get('urls'));
const store = connect(urls, { view: 'stock', backoff: { initialMs: 100, maxMs: 1000 } });
window.store = store;
window.updates = [];
window.replicas = [];
window.sent = [];
store.on('update', (u) => window.updates.push({ ...u, url: store.url }));
store.on('replica', (r) => window.replicas.push(r));
window.sell = (product, quantity) => {
  const p = store.dispatch('stock/corrected', { product, location: 'shelf', quantity });
  p.applied.catch(() => {});
  window.sent.push(p);
};
window.allApplied = () => Promise.all(window.sent.map((p) => p.applied));
`;

before(async () => {
  pageServer = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>failover</title><script type="module" src="/app.js"></script>');
    } else if (path === '/app.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(APP);
    } else if (/^\/nodb(\/[a-z]+)?\.js$/.test(path)) {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(readFileSync(join(ROOT, 'web', path.slice(1)), 'utf8'));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((ok) => pageServer.listen(0, '127.0.0.1', ok));
  origin = `http://127.0.0.1:${pageServer.address().port}`;
  const data = dataDir();
  chronicler = await startService('chronicler', ['chronicler', '--data', join(data, 'chronicler'), '--listen', '127.0.0.1:0']);
  views.a = await startView('127.0.0.1:0', join(data, 'snapshots-a'));
  views.b = await startView('127.0.0.1:0', join(data, 'snapshots-b'));
  await Promise.all([whenReady(views.a.url), whenReady(views.b.url)]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await new Promise((ok) => (pageServer ? pageServer.close(ok) : ok()));
  await Promise.all([...procs].map((proc) => stop({ proc }, 'SIGKILL')));
});

/**
 * Asserts that the page saw every seq up to `to` exactly once: the first
 * snapshot, then patches each starting right after the last, no other snapshot.
 */
function assertEachSeqOnce(updates, to) {
  assert.equal(updates[0].kind, 'snapshot');
  const seen = [];
  let last = updates[0].seq;
  for (const u of updates.slice(1)) {
    assert.equal(u.kind, 'patch', `no snapshot after the first (got one at seq ${u.seq} from ${u.url})`);
    assert.equal(u.from, last + 1, `the update after seq ${last} covers ${u.from}..=${u.seq}`);
    for (let s = u.from; s <= u.seq; s++) seen.push(s);
    last = u.seq;
  }
  assert.equal(last, to, 'up to the head');
  assert.deepEqual(seen, Array.from({ length: to - updates[0].seq }, (_, i) => updates[0].seq + 1 + i));
}

/** Waits until the page is open on `url` at the chronicler's head, then checks it against `url`. */
async function assertCaughtUpOn(page, url, clientActions) {
  // The head once the page's own actions are acknowledged: read before,
  // it can miss the page's last ones still on their way.
  await page.waitForFunction(([u]) => window.store.url === u && window.store.status === 'open' && window.store.pending === 0, [url], WAIT);
  const h = await head();
  await page.waitForFunction(([u, h]) => window.store.url === u && window.store.status === 'open' && window.store.seq >= h && window.store.pending === 0, [url, h], WAIT);
  await page.evaluate(() => window.allApplied());
  const { state, seq, updates } = await page.evaluate(() => ({ state: window.store.getState(), seq: window.store.seq, updates: window.updates }));
  assert.equal(seq, h);
  const view = await (await fetch(`${url}/views/stock`)).json();
  assert.equal(view.seq, h, 'the survivor is at the head');
  assert.deepEqual(state, view.state, "the page's state is the survivor's");
  assertEachSeqOnce(updates, h);

  // The page's actions: each in the log exactly once.
  const clientId = await page.evaluate(() => window.store.clientId);
  const ids = (await readLog(chronicler.url)).map((a) => a.id).filter((id) => id.startsWith(`${clientId}:`));
  assert.deepEqual(ids, Array.from({ length: clientActions }, (_, i) => `${clientId}:${i + 1}`));
}

test('a page on two data views fails over to the survivor and back, seeing every seq once', async () => {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  try {
    const urls = [views.a.url, views.b.url];
    await page.goto(`${origin}/?urls=${encodeURIComponent(JSON.stringify(urls))}`);
    await page.waitForFunction(() => window.store?.status === 'open' && window.updates.length > 0, null, WAIT);
    assert.equal(await page.evaluate(() => window.store.url), views.a.url, 'the first URL first');

    // Dispatches from the page and from another client, on a.
    let mine = 0;
    for (let i = 1; i <= 4; i++) {
      await page.evaluate((q) => window.sell('apple', q), i);
      mine++;
      await otherAction(i);
    }
    await assertCaughtUpOn(page, views.a.url, mine);

    // a dies; the other client keeps dispatching, and so does the page
    // (into its outbox while it is offline, then on b).
    await stop(views.a, 'SIGKILL');
    for (let i = 1; i <= 6; i++) {
      await otherAction(10 + i);
      if (i % 2 === 0) { await page.evaluate((q) => window.sell('apple', q), 10 + i); mine++; }
      await new Promise((r) => setTimeout(r, 40));
    }
    await assertCaughtUpOn(page, views.b.url, mine);
    assert.deepEqual(await page.evaluate(() => window.replicas), [{ url: views.b.url, index: 1 }]);
    const answers = await page.evaluate(() => window.readyAnswers);
    assert.ok(answers.some(([u, s]) => u === `${views.b.url}/ready` && s === 200), `the page read b's /ready: ${JSON.stringify(answers)}`);

    // a comes back on its port and catches up; then b dies.
    const port = new URL(views.a.url).port;
    views.a = await startView(`127.0.0.1:${port}`, views.a.args[views.a.args.indexOf('--snapshots') + 1]);
    await whenReady(views.a.url, await head());
    await stop(views.b, 'SIGKILL');
    for (let i = 1; i <= 6; i++) {
      await otherAction(20 + i);
      if (i % 3 === 0) { await page.evaluate((q) => window.sell('apple', q), 20 + i); mine++; }
      await new Promise((r) => setTimeout(r, 40));
    }
    await assertCaughtUpOn(page, views.a.url, mine);
    assert.deepEqual(await page.evaluate(() => window.replicas), [{ url: views.b.url, index: 1 }, { url: views.a.url, index: 0 }]);
    assert.deepEqual(problems, []);
  } finally {
    await page.close();
  }
});
