// The history page (/inspect) in a real browser (Debian's headless
// Chromium, driven by playwright-core) against the real `nodb up
// --auth-key`: opened with a #token= link it lists the log's actions (the
// rejected one marked), the filters narrow the table to what GET /history
// gives, picking a seq shows the view's state at that seq and the patch it
// made (equal to GET /views/stock?at=N and /patch?seq=N), stepping moves
// one seq (buttons and arrow keys), live mode shows an action dispatched
// after the page loaded, a token without the `log` right is told so
// plainly, and the page fits a phone. Run after `cargo build`:
//
//   node --test web/e2e/inspect.test.js
//
// Screenshots at 1280×800 and 390×844 go to target/inspect-screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ARTIFACTS, dataDir, freePort, keygen, launchBrowser, mintToken, startUp, stop } from './harness.js';

const WAIT = { timeout: 20_000 };
const SHOTS = join(dirname(ARTIFACTS), 'inspect-screenshots');

let browser;
let up;
let key;
/** The operator's token: every right. */
let admin;
let page;
/** Acks of the seeded actions, by id. */
const seqOf = new Map();

async function api(path, token = admin) {
  const res = await fetch(`${up.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200, `${path}: ${await res.clone().text()}`);
  return res.json();
}

/** Each client's last action number. */
const numbers = new Map();
/** The seq of the refused sale. */
let refused;
async function dispatch(client, type, payload) {
  const n = (numbers.get(client) ?? 0) + 1;
  numbers.set(client, n);
  const id = `operator.${client}:${n}`;
  const res = await fetch(`${up.url}/actions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id, type, payload }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const { acks } = await res.json();
  seqOf.set(id, acks[0].seq);
  return acks[0].seq;
}

/** Every action /history gives with `query`, page by page. */
async function allHistory(query = '') {
  const out = [];
  let from = 1;
  for (;;) {
    const page = await api(`/history?from=${from}&limit=1000${query}`);
    out.push(...page.actions);
    if (page.next === null) return out;
    from = page.next;
  }
}

async function waitForSeq(seq) {
  for (let i = 0; i < 400; i++) {
    const { seq: at } = await api('/views/stock');
    if (at >= seq) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the view did not reach seq ${seq}`);
}

/** The seqs of the table's rows. */
const tableSeqs = () => page.$$eval('#actions tbody tr', (rows) => rows.map((r) => Number(r.dataset.seq)));

/** Waits until the table shows exactly `seqs`. */
async function tableShows(seqs) {
  await page.waitForFunction(
    (want) => JSON.stringify([...document.querySelectorAll('#actions tbody tr')].map((r) => Number(r.dataset.seq))) === want,
    JSON.stringify(seqs), WAIT,
  ).catch(async (e) => {
    assert.deepEqual(await tableSeqs(), seqs, e.message);
  });
}

async function applyFilters(fields) {
  for (const name of ['type', 'client', 'from', 'to']) await page.fill(`#filters [name="${name}"]`, String(fields[name] ?? ''));
  await page.click('#apply');
}

/** Waits until the detail shows seq `seq`, state and patch loaded. */
async function detailAt(seq, view = 'stock') {
  // The view too: after another view is picked at the same seq, the
  // patch and tree show the seq before the new view's have loaded.
  await page.waitForFunction(
    ([s, v]) => ['#seq-now', '#patch', '#state'].every((sel) => document.querySelector(sel)?.dataset.seq === String(s))
      && ['#patch', '#state'].every((sel) => document.querySelector(sel)?.dataset.view === v),
    [seq, view], WAIT,
  );
}

/** The value at a JSON Pointer. */
function at(value, pointer) {
  return pointer.split('/').slice(1).map((t) => t.replaceAll('~1', '/').replaceAll('~0', '~')).reduce((v, k) => v?.[k], value);
}

/** Checks that the page's patch and tree at `seq` are the server's. */
async function assertDetailMatches(seq) {
  await detailAt(seq);
  const { ops } = await api(`/views/stock/patch?seq=${seq}`);
  const state = await api(`/views/stock?at=${seq}`);
  const shown = await page.$$eval('#patch li', (items) => items.map((li) => ({
    op: li.dataset.op, path: li.dataset.path, value: li.querySelector('.value')?.textContent ?? null,
  })));
  assert.deepEqual(shown, ops.map((op) => ({ op: op.op, path: op.path, value: 'value' in op ? JSON.stringify(op.value) : null })));
  assert.equal(await page.getAttribute('#state', 'data-hash'), state.hash);
  // The tree's top level is the state's, and every path the patch set is
  // open and shows the state's value there.
  const top = await page.$$eval('#state > details > .children > [data-path]', (n) => n.map((e) => e.dataset.path));
  assert.deepEqual(top, Object.keys(state.state).map((k) => `/${k}`));
  for (const op of ops.filter((o) => o.op !== 'remove' && !o.path.endsWith('/-'))) {
    const node = page.locator(`#state [data-path="${op.path}"]`);
    await node.waitFor({ state: 'visible', ...WAIT });
    const value = at(state.state, op.path);
    if (value === null || typeof value !== 'object') {
      assert.equal(await node.locator(':scope > .val').textContent(), JSON.stringify(value), op.path);
    }
    assert.match(await node.getAttribute('class'), /changed/, `${op.path} is marked as changed`);
  }
}

before(async () => {
  key = await keygen();
  up = await startUp(dataDir(), await freePort(), ['--auth-key', key]);
  admin = await mintToken(key, '--client', 'operator', '--dispatch', '', '--read', '*', '--admin');
  // Counts, sales from two clients, and a sale that is refused.
  await dispatch('ana', 'stock/corrected', { product: 'widget', location: 'aisle-1', quantity: 40 });
  await dispatch('ana', 'stock/corrected', { product: 'gizmo', location: 'back', quantity: 9 });
  for (let i = 0; i < 12; i++) {
    await dispatch(i % 3 === 0 ? 'bob' : 'ana', 'stock/sold', { product: 'widget', location: 'aisle-1', quantity: 1 });
  }
  // Enough actions for several pages (the views ignore their type).
  const ticks = Array.from({ length: 250 }, (_, i) => ({ id: `operator.bulk:${i + 1}`, type: 'audit/tick', payload: { i } }));
  const bulk = await fetch(`${up.url}/actions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify(ticks),
  });
  assert.equal(bulk.status, 200, await bulk.clone().text());
  refused = await dispatch('bob', 'stock/sold', { product: 'gizmo', location: 'back', quantity: 500 });
  await dispatch('ana', 'stock/moved', { product: 'gizmo', from: 'back', to: 'shelf', quantity: 4 });
  await waitForSeq(Math.max(...seqOf.values()));
  browser = await launchBrowser();
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
});

after(async () => {
  await browser?.close();
  if (up) await stop(up, 'SIGTERM');
});

test('the page lists the newest actions, the refused one marked', async () => {
  await page.goto(`${up.url}/inspect#token=${admin}`);
  await page.waitForSelector('body[data-ready]', WAIT);
  const log = await allHistory();
  await tableShows(log.slice(-100).map((a) => a.seq));
  const row = page.locator(`#actions tbody tr[data-seq="${refused}"]`);
  assert.equal(await row.getAttribute('data-rejected'), 'true');
  assert.match(await row.locator('.badge-rejected').getAttribute('title'), /cannot sell 500/);
  assert.equal(await page.locator('#actions tbody tr[data-rejected]').count(), 1, 'only the refused sale is marked');
  assert.equal(await page.getAttribute('#head', 'data-seq'), String(log.at(-1).seq));
});

test('the filters narrow the table to what /history gives', async () => {
  const log = await allHistory();
  await applyFilters({ type: 'stock/sold' });
  await tableShows(log.filter((a) => a.type === 'stock/sold').map((a) => a.seq));
  await applyFilters({ type: 'stock/*', client: 'operator.bob' });
  const bobs = log.filter((a) => a.type.startsWith('stock/') && a.client === 'operator.bob').map((a) => a.seq);
  assert.ok(bobs.length >= 4);
  await tableShows(bobs);
  const [lo, hi] = [log[3].seq, log[8].seq];
  await applyFilters({ from: lo, to: hi });
  await tableShows(log.filter((a) => a.seq >= lo && a.seq <= hi).map((a) => a.seq));
  await page.click('#clear');
  await tableShows(log.slice(-100).map((a) => a.seq));
});

test('the pager moves a page at a time', async () => {
  const log = await allHistory();
  const seqs = log.map((a) => a.seq);
  assert.ok(seqs.length > 250);
  await page.click('#first');
  await tableShows(seqs.slice(0, 100));
  await page.click('#later');
  await tableShows(seqs.slice(100, 200));
  await page.click('#newest');
  await tableShows(seqs.slice(-100));
  await page.click('#earlier');
  await tableShows(seqs.slice(-200, -100));
  // A filter pages too: the ticks, a hundred at a time.
  await applyFilters({ type: 'audit/*' });
  const ticks = log.filter((a) => a.type === 'audit/tick').map((a) => a.seq);
  await tableShows(ticks.slice(-100));
  await page.click('#earlier');
  await tableShows(ticks.slice(-200, -100));
  await page.click('#earlier');
  await tableShows(ticks.slice(0, 50));
  assert.equal(await page.isDisabled('#earlier'), true, 'nothing before the first tick');
  await page.click('#clear');
  await tableShows(seqs.slice(-100));
});

test('picking a seq shows the state at that seq and its patch; stepping moves one seq', async () => {
  const sale = seqOf.get('operator.ana:4');
  await page.click('#first');
  await page.waitForSelector(`#actions tbody tr[data-seq="${sale}"]`, WAIT);
  await page.click(`#actions tbody tr[data-seq="${sale}"]`);
  await assertDetailMatches(sale);
  assert.match(await page.textContent('#action'), /stock\/sold/);
  await page.click('#step-forward');
  await assertDetailMatches(sale + 1);
  await page.keyboard.press('ArrowLeft');
  await page.keyboard.press('ArrowLeft');
  await assertDetailMatches(sale - 1);
  await page.keyboard.press('ArrowRight');
  await assertDetailMatches(sale);
  // Another view at the same seq.
  await page.selectOption('#view', 'activity');
  const activity = await api(`/views/activity?at=${sale}`);
  await page.waitForFunction((h) => document.querySelector('#state')?.dataset.hash === h, activity.hash, WAIT);
  const { ops } = await api(`/views/activity/patch?seq=${sale}`);
  assert.equal(await page.locator('#patch li').count(), ops.length);
  await page.selectOption('#view', 'stock');
  await assertDetailMatches(sale);
  // The state tree opens and closes.
  const products = page.locator('#state details[data-path="/products"]');
  await products.locator(':scope > summary').click();
  assert.equal(await products.evaluate((d) => d.open), false);
  await products.locator(':scope > summary').click();
  assert.equal(await products.evaluate((d) => d.open), true);
});

test('screenshots at desktop and phone width; the phone page does not scroll sideways', async () => {
  mkdirSync(SHOTS, { recursive: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.screenshot({ path: join(SHOTS, 'inspect-1280x800.png'), fullPage: false });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(200);
  const widths = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(widths[0] <= widths[1], `the page is ${widths[0]} px wide in a ${widths[1]} px window`);
  await page.screenshot({ path: join(SHOTS, 'inspect-390x844.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
});

test('live mode shows an action dispatched after the page loaded', async () => {
  await page.check('#live');
  await page.waitForFunction(() => document.body.classList.contains('is-live'), null, WAIT);
  const seq = await dispatch('ana', 'stock/corrected', { product: 'sprocket', location: 'aisle-2', quantity: 3 });
  const row = await page.waitForSelector(`#actions tbody tr[data-seq="${seq}"]`, WAIT);
  assert.equal(await row.getAttribute('data-type'), 'stock/corrected');
  assert.equal(await row.getAttribute('data-client'), 'operator.ana');
  assert.equal(await page.getAttribute('#head', 'data-seq'), String(seq));
  await page.uncheck('#live');
});

test('an unavailable data view is said plainly, and Retry recovers', async () => {
  const body = JSON.stringify({ error: { code: 'unavailable', message: 'cannot read the chronicler\'s log: test' } });
  await page.route('**/history?*', (route) => route.fulfill({ status: 503, contentType: 'application/json', body }));
  try {
    await page.click('#newest');
    const error = await page.waitForSelector('#error:not([hidden])', WAIT);
    assert.match(await error.textContent(), /unavailable right now: cannot read the chronicler's log: test/);
    assert.equal(await page.getAttribute('#error', 'data-status'), '503');
  } finally {
    await page.unroute('**/history?*');
  }
  await page.click('#error-retry');
  await page.waitForSelector('#error[hidden]', { state: 'attached', ...WAIT });
  const log = await allHistory();
  await tableShows(log.slice(-100).map((a) => a.seq));
});

test('a token without the log right is told so plainly', async () => {
  const reader = await mintToken(key, '--client', 'reader', '--read', '*');
  const other = await browser.newPage();
  try {
    await other.goto(`${up.url}/inspect#token=${reader}`);
    const error = await other.waitForSelector('#error:not([hidden])', WAIT);
    assert.match(await error.textContent(), /lacks the log right/);
    assert.equal(await other.locator('#actions tbody tr').count(), 0);
  } finally {
    await other.close();
  }
});
