// Redux DevTools (`connect(…, { devtools })`, nodb/devtools.js) in a real
// browser (headless Chromium) against the real `nodb up --auth-key KEY`.
//
// A real Redux DevTools extension cannot be loaded here: headless Chromium
// does not run extensions, and none is installed. So the page gets, before
// any of its scripts runs (`page.addInitScript`), a
// `window.__REDUX_DEVTOOLS_EXTENSION__` with the extension's documented
// `connect()` interface that records every call (the states as JSON, as the
// extension serializes them). Asserted: `init` with the first snapshot's
// state; one `send` per update the store applied, with its seq (and `from`),
// the seqs covering the history without a gap, and each state equal to
// `GET /views/stock?at=<seq>`; this client's own dispatch under its type;
// another client's action under its type from `GET /history` with a token
// that has the `log` right (if the server answers 200 there; if it answers
// 404, as before `/history` existed, `@@nodb/update`), and as
// `@@nodb/update` with a token without it, `/history` asked at most once.
//
// The page's client modules are the working tree's (web/nodb.js,
// web/nodb/*.js), served by the test: the binary embeds them when it is
// built, and a stale build must not hide a change (web/test/exports.test.js
// checks that the binary serves every module). Run after `cargo build`:
//
//   node --test web/e2e/devtools.test.js

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, dataDir, freePort, keygen, launchBrowser, mintToken, startUp, stop } from './harness.js';

const WAIT = { timeout: 20_000 };

let browser;
let up;
let key;
/** An operator's token, for the test's own reads and the other client's actions. */
let admin;
/** The other client's next action number. */
let otherNumber = 0;

before(async () => {
  key = await keygen();
  up = await startUp(dataDir(), await freePort(), ['--auth-key', key]);
  admin = await mintToken(key, '--client', 'operator', '--dispatch', '', '--read', '*', '--admin');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  if (up) await stop(up, 'SIGTERM');
});

/** GET `path` with the operator's token: [status, JSON body]. */
async function get(path, token = admin) {
  const res = await fetch(`${up.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return [res.status, await res.json().catch(() => null)];
}

/** Another client's action, through POST /actions; resolves with its seq. */
async function otherAction(type, payload) {
  const action = { id: `operator:${++otherNumber}`, type, payload };
  const res = await fetch(`${up.url}/actions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify(action),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return { id: action.id, seq: (await res.json()).acks[0].seq };
}

/** The fake extension, recording `connect` options and every call in `window.__devtools`. */
function fakeExtension() {
  const json = (v) => (v === undefined ? null : JSON.parse(JSON.stringify(v)));
  const instances = [];
  window.__devtools = instances;
  window.__REDUX_DEVTOOLS_EXTENSION__ = {
    connect(options) {
      const calls = [];
      instances.push({ options: json(options), calls });
      return {
        init: (state) => calls.push({ method: 'init', state: json(state), seq: window.store?.seq ?? null }),
        send: (action, state) => calls.push({ method: 'send', action: json(action), state: json(state) }),
        error: (message) => calls.push({ method: 'error', message }),
        subscribe: () => () => {},
        unsubscribe: () => calls.push({ method: 'unsubscribe' }),
      };
    },
  };
}

/** The page's script: a store of the `stock` view with devtools, and what it applied. */
const APP = `
import { connect } from '/nodb.js';
const token = new URLSearchParams(location.hash.slice(1)).get('token');
const store = connect(location.origin, { view: 'stock', token, devtools: { name: 'e2e stock' } });
window.store = store;
window.updates = [];
store.on('update', (u) => window.updates.push(u));
window.sell = (product, quantity) => store.dispatch('stock/corrected', { product, location: 'shelf', quantity }).applied;
`;

/** The module files of the working tree, by URL path. */
function clientFile(path) {
  return readFileSync(join(ROOT, 'web', path.replace(/^\//, '')), 'utf8');
}

/**
 * Opens the demo's document with `token`, its script replaced by {@link APP};
 * resolves once the store has a state and DevTools its `init`. `history`
 * counts the page's requests to `/history`.
 */
async function openPage(token) {
  const page = await browser.newPage();
  const problems = [];
  const history = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('request', (r) => { if (new URL(r.url()).pathname === '/history') history.push(r.url()); });
  await page.addInitScript(fakeExtension);
  await page.route(`${up.url}/demo.js`, (r) => r.fulfill({ contentType: 'text/javascript', body: APP }));
  await page.route(/\/nodb(\/[a-z]+)?\.js$/, (r) => r.fulfill({ contentType: 'text/javascript', body: clientFile(new URL(r.request().url()).pathname) }));
  await page.goto(`${up.url}/#token=${token}`);
  await page.waitForFunction(() => window.store?.seq > 0 && window.__devtools?.[0]?.calls.length > 0, null, WAIT);
  return { page, problems, history };
}

/** Waits until DevTools has been sent the update of the store's current seq, then reads what it got. */
async function recorded(page, seq) {
  await page.waitForFunction((s) => {
    const sends = window.__devtools[0].calls.filter((c) => c.method === 'send');
    return window.store.seq >= s && sends.at(-1)?.action.seq === window.store.seq;
  }, seq, WAIT);
  return page.evaluate(() => ({ instances: window.__devtools, updates: window.updates, seq: window.store.seq }));
}

/**
 * Asserts the common contract: one connection, `init` first with the state
 * at its seq, then one `send` per update with the state at its seq, the
 * seqs following each other. Returns the sends by seq.
 */
async function assertHistory({ instances, updates }) {
  assert.equal(instances.length, 1, 'one DevTools connection');
  const [{ options, calls }] = instances;
  assert.equal(options.name, 'e2e stock');
  assert.equal(calls[0].method, 'init');
  assert.equal(calls.filter((c) => c.method === 'init').length, 1);
  const [status, at] = await get(`/views/stock?at=${calls[0].seq}`);
  assert.equal(status, 200);
  assert.deepEqual(calls[0].state, at.state, `init is the state at seq ${calls[0].seq}`);
  const sends = calls.filter((c) => c.method === 'send');
  // The updates after the first snapshot, one send each, in order.
  assert.deepEqual(sends.map((c) => [c.action.from ?? c.action.seq, c.action.seq]), updates.slice(1).map((u) => [u.from, u.seq]));
  let last = calls[0].seq;
  for (const { action, state } of sends) {
    assert.equal(action.from ?? action.seq, last + 1, `the send after seq ${last} starts at ${last + 1}`);
    last = action.seq;
    const [s, view] = await get(`/views/stock?at=${action.seq}`);
    assert.equal(s, 200);
    assert.deepEqual(state, view.state, `the state sent with seq ${action.seq} is the view's at that seq`);
  }
  assert.ok(sends.length >= 2, `${sends.length} sends`);
  return new Map(sends.map((c) => [c.action.seq, c.action]));
}

test('with the log right: init, one send per update with its seq and state; own and other actions by type', async () => {
  const token = await mintToken(key, '--client', 'dev', '--dispatch', 'stock/', '--read', 'stock', '--log');
  // What the server says of /history for this token: 200 once it exists, 404 before.
  const [historyStatus] = await get('/history?from=1&to=1&limit=1', token);
  assert.ok([200, 404].includes(historyStatus), `GET /history answered ${historyStatus}`);
  const { page, problems, history } = await openPage(token);
  try {
    const own = await page.evaluate(() => window.sell('devtools-a', 5));
    const other = await otherAction('stock/sold', { product: 'devtools-a', location: 'shelf', quantity: 2 });
    const record = await recorded(page, other.seq);
    const bySeq = await assertHistory(record);

    const mine = bySeq.get(own);
    assert.equal(mine.type, 'stock/corrected');
    assert.match(mine.id, /^dev\.[0-9a-f]{12}:1$/);
    assert.deepEqual(mine.payload, { product: 'devtools-a', location: 'shelf', quantity: 5 });
    const theirs = bySeq.get(other.seq);
    if (historyStatus === 200) {
      assert.equal(theirs.type, 'stock/sold');
      assert.equal(theirs.id, other.id);
      assert.deepEqual(theirs.payload, { location: 'shelf', product: 'devtools-a', quantity: 2 });
      assert.equal(typeof theirs.ts, 'number');
    } else {
      assert.deepEqual(theirs, { type: '@@nodb/update', seq: other.seq });
    }
    assert.ok(history.length >= 1, 'the page asked /history');
    // (The browser reports a 404 of /history, before it existed, as a console error.)
    assert.deepEqual(problems.filter((p) => !/status of 404/.test(p)), []);
  } finally {
    await page.close();
  }
});

test('without the log right: others\' actions are @@nodb/update, own ones keep their type, /history asked once', async () => {
  const token = await mintToken(key, '--client', 'viewer', '--dispatch', 'stock/', '--read', 'stock');
  const [historyStatus] = await get('/history?from=1&to=1&limit=1', token);
  assert.ok([403, 404].includes(historyStatus), `GET /history answered ${historyStatus} to a token without log`);
  const { page, problems, history } = await openPage(token);
  try {
    const first = await otherAction('stock/sold', { product: 'devtools-a', location: 'shelf', quantity: 1 });
    await recorded(page, first.seq);
    const own = await page.evaluate(() => window.sell('devtools-b', 4));
    const second = await otherAction('stock/sold', { product: 'devtools-b', location: 'shelf', quantity: 1 });
    const record = await recorded(page, second.seq);
    const bySeq = await assertHistory(record);
    assert.deepEqual(bySeq.get(first.seq), { type: '@@nodb/update', seq: first.seq });
    assert.deepEqual(bySeq.get(second.seq), { type: '@@nodb/update', seq: second.seq });
    assert.equal(bySeq.get(own).type, 'stock/corrected');
    assert.match(bySeq.get(own).id, /^viewer\.[0-9a-f]{12}:1$/);
    assert.equal(history.length, 1, `refused once and not asked again: ${history.join(', ')}`);
    // (The browser reports the refusal of /history as a console error.)
    assert.deepEqual(problems.filter((p) => !/status of 40[34]/.test(p)), []);
  } finally {
    await page.close();
  }
});
