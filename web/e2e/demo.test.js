// The warehouse demo in a real browser (Debian's headless Chromium, driven
// by playwright-core) against the real `nodb up`: two pages stay in sync, a
// rejected action shows its notice (never over a form), a product under its
// threshold is reordered by the envoy and shown live (one word per status,
// no seqs on screen), the cascaded views follow, actions dispatched while
// the server is down are applied exactly once after it comes back, pages
// catch up after a restart, the tables fit a phone, and the page shows
// progress while the view replays its history. Run after `cargo build` (or
// `cargo nextest run`):
//
//   node --test web/e2e/*.test.js
//
// Screenshots of the demo are saved under target/artifacts/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { artifact, dataDir, freePort, launchBrowser, readLog, startUp, stop } from './harness.js';

const WAIT = { timeout: 20_000 };

let browser;
let context;
let up;
let data;
let port;
const pages = [];

before(async () => {
  data = dataDir();
  port = await freePort();
  up = await startUp(data, port);
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
});

after(async () => {
  await browser?.close();
  if (up) await stop(up, 'SIGTERM');
});

/** Opens the demo and waits until its socket is open. */
async function openDemo() {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(up.url);
  await page.waitForFunction(() => document.querySelector('#status')?.textContent.trim() === 'open', null, WAIT);
  pages.push(page);
  return page;
}

/** Fills a form's fields by input name and submits it. */
async function submit(page, form, fields) {
  for (const [name, value] of Object.entries(fields)) {
    await page.fill(`#${form} [name="${name}"]`, String(value));
  }
  await page.click(`#${form} [type="submit"]`);
}

/**
 * Fails if `page`'s notice covers any input or button: it must lie within
 * the sticky top bar (which hides what scrolls under it anyway), and no
 * visible control may meet it outside the top bar.
 */
async function assertNoticeCoversNothing(page) {
  await page.locator('.notice').evaluate((n) => Promise.all(n.getAnimations().map((a) => a.finished)));
  const problems = await page.evaluate(() => {
    const notice = document.querySelector('.notice');
    if (!notice) return ['no notice'];
    const n = notice.getBoundingClientRect();
    const bar = document.querySelector('.topbar').getBoundingClientRect();
    const found = [];
    if (n.top < bar.top - 0.5 || n.bottom > bar.bottom + 0.5 || n.left < bar.left - 0.5 || n.right > bar.right + 0.5) {
      found.push(`the notice (${n.top}..${n.bottom}) is not within the top bar (${bar.top}..${bar.bottom})`);
    }
    for (const c of document.querySelectorAll('main input, main button')) {
      const r = c.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      const top = Math.max(r.top, n.top, bar.bottom); // the part below the top bar
      const bottom = Math.min(r.bottom, n.bottom);
      if (top < bottom && r.left < n.right && n.left < r.right) found.push(c.outerHTML.slice(0, 80));
    }
    return found;
  });
  assert.deepEqual(problems, [], 'the notice covers part of the page');
}

/** Waits until `page` shows `quantity` of `product` at `location`. */
function cell(page, product, location, quantity) {
  return page.waitForFunction(
    ([p, l, q]) => {
      const td = document.querySelector(`#stock-table tr[data-product="${p}"] [data-location="${l}"]`);
      return td && td.textContent.trim() === String(q);
    },
    [product, location, quantity],
    WAIT,
  );
}

test('an action dispatched in one page appears in the other', async () => {
  const a = await openDemo();
  const b = await openDemo();
  await submit(a, 'form-correct', { product: 'widget', location: 'aisle-1', quantity: 7 });
  await cell(b, 'widget', 'aisle-1', 7);
  await cell(a, 'widget', 'aisle-1', 7);
  await submit(b, 'form-sell', { product: 'widget', location: 'aisle-1', quantity: 2 });
  await cell(a, 'widget', 'aisle-1', 5);
  // Both pages reach the same seq (kept in a data attribute: people see
  // the time of the last change, never a seq).
  const seqA = await a.getAttribute('#last-change', 'data-seq');
  assert.ok(Number(seqA) >= 2, `seq ${seqA}`);
  await b.waitForFunction((s) => document.querySelector('#last-change').dataset.seq === s, seqA, WAIT);
  assert.equal(await b.textContent('#last-change'), 'just now');
  // The activity feed shows the sale in both pages.
  await a.waitForSelector('#activity li[data-seq="2"]', WAIT);
  await b.waitForSelector('#activity li[data-seq="2"]', WAIT);
});

test('a rejected action shows its notice', async () => {
  const [a] = pages;
  await submit(a, 'form-sell', { product: 'widget', location: 'aisle-1', quantity: 500 });
  const notice = await a.waitForSelector('.notice-rejected', WAIT);
  assert.match(await notice.textContent(), /cannot sell 500/);
  await assertNoticeCoversNothing(a);
  for (const y of [300, 600, 100_000]) { // wherever the page is scrolled to
    await a.evaluate((top) => window.scrollTo(0, top), y);
    await assertNoticeCoversNothing(a);
  }
  await a.evaluate(() => window.scrollTo(0, 0));
});

test('a product that falls below its threshold is reordered, live in every page', async () => {
  const [a, b] = pages;
  await submit(a, 'form-correct', { product: 'gizmo', location: 'aisle-1', quantity: 10 });
  await cell(a, 'gizmo', 'aisle-1', 10);
  await submit(a, 'form-threshold', { product: 'gizmo', threshold: 5, quantity: 20 });
  await b.waitForSelector('#reorder-table tr[data-product="gizmo"][data-status="ok"]', WAIT);
  await submit(b, 'form-sell', { product: 'gizmo', location: 'aisle-1', quantity: 6 });
  // The reorder envoy (run by `nodb up`) orders from the demo supplier and
  // records reorder/placed; both pages show it, with one word for the
  // status wherever it appears: "ordered".
  for (const page of [a, b]) {
    const row = await page.waitForSelector('#reorder-table tr[data-product="gizmo"][data-status="placed"]', WAIT);
    assert.match(await row.textContent(), /ordered\s*20 units · ref \S+/);
    const badge = await page.waitForSelector('#stock-table tr[data-product="gizmo"] [data-reorder="placed"]', WAIT);
    assert.equal(await badge.textContent(), 'ordered');
    const entry = await page.waitForSelector('#activity li[data-type="reorder_placed"]', WAIT);
    assert.match(await entry.textContent(), /ordered 20 gizmo from the supplier/);
    const text = await page.textContent('main');
    assert.doesNotMatch(text, /\bplaced\b/, 'the page says "ordered", never "placed"');
  }
  const log = await readLog(up.url);
  const placed = log.filter((x) => x.type === 'reorder/placed' && x.payload.product === 'gizmo');
  assert.equal(placed.length, 1, 'one order in the log');
});

test('the cascaded views show the fastest movers and the products running low', async () => {
  const [a, b] = pages;
  for (const page of [a, b]) {
    // marketing (from activity): gizmo sold 6 in the last hour, widget 2.
    await page.waitForFunction(() => {
      const hour = document.querySelector('#movers tr[data-product="gizmo"] td[data-window="hour"]');
      return hour?.textContent.trim() === '6';
    }, null, WAIT);
    // lowstock (from stock and marketing, a cascade of a cascade): gizmo is
    // 1 short of its threshold, with its reorder placed.
    const low = await page.waitForSelector('#lowstock li[data-product="gizmo"][data-short="1"] [data-status="placed"]', WAIT);
    assert.equal(await low.textContent(), 'ordered');
    // Which upstream seqs lowstock reflects is in data-sources; people read
    // which views it is derived from and when, never a (microsecond) seq.
    const node = await page.waitForSelector('#lowstock-sources[data-sources*="stock"]', WAIT);
    const sources = JSON.parse(await node.getAttribute('data-sources'));
    assert.ok(sources.stock > 0 && sources.marketing > 0, JSON.stringify(sources));
    assert.match(await node.textContent(), /^Derived from marketing and stock · updated /);
  }
  // No raw seq anywhere people read: no "#12", no long numbers, no "@ 14".
  for (const page of [a, b]) {
    const text = await page.evaluate(() => document.body.innerText);
    assert.doesNotMatch(text, /#\d|\d{7,}|@ \d/, text);
  }
});

test('actions dispatched while the server is down apply exactly once after it comes back', async () => {
  const [a, b] = pages;
  const before = await readLog(up.url);
  await stop(up, 'SIGKILL');
  await a.waitForFunction(() => document.querySelector('#status').textContent.trim() !== 'open', null, WAIT);
  // Three moves while offline: each one applied twice would leave 5 - 6 < 0
  // (rejected) or a different split; exactly once leaves 2 and 3.
  for (let i = 0; i < 3; i++) {
    await submit(a, 'form-move', { product: 'widget', from: 'aisle-1', to: 'aisle-2', quantity: 1 });
  }
  await a.waitForFunction(() => document.querySelector('#pending').textContent.includes('3'), null, WAIT);
  up = await startUp(data, port);
  await cell(a, 'widget', 'aisle-1', 2);
  await cell(a, 'widget', 'aisle-2', 3);
  // The other page reconnected and caught up too.
  await cell(b, 'widget', 'aisle-1', 2);
  await cell(b, 'widget', 'aisle-2', 3);
  await a.waitForFunction(() => /\b0\b/.test(document.querySelector('#pending').textContent), null, WAIT);
  const log = await readLog(up.url);
  const moves = log.slice(before.length).filter((x) => x.type === 'stock/moved');
  assert.equal(moves.length, 3, 'each move is in the log once');
  assert.equal(new Set(moves.map((m) => m.id)).size, 3);
});

test('after a restart the pages reconnect and follow new actions', async () => {
  const [a, b] = pages;
  await stop(up, 'SIGTERM');
  up = await startUp(data, port);
  const res = await fetch(`${up.url}/actions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id: 'e2e:1', type: 'stock/corrected', payload: { product: 'gadget', location: 'aisle-1', quantity: 9 } }),
  });
  assert.equal(res.status, 200);
  await cell(a, 'gadget', 'aisle-1', 9);
  await cell(b, 'gadget', 'aisle-1', 9);
  await a.screenshot({ path: artifact('demo-desktop.png'), fullPage: true });
  await a.setViewportSize({ width: 390, height: 844 });
  await a.screenshot({ path: artifact('demo-phone.png'), fullPage: true });
});

test('on a phone the tables fit and a rejection covers no form', async () => {
  const [a] = pages;
  await a.setViewportSize({ width: 390, height: 844 });
  const overflow = await a.evaluate(() => [document.documentElement, ...document.querySelectorAll('.card, #reorders-wrap, #reorder-table')]
    .filter((e) => e.scrollWidth > e.clientWidth + 1)
    .map((e) => `${e.id || e.className}: ${e.scrollWidth} > ${e.clientWidth}`));
  assert.deepEqual(overflow, [], 'nothing is wider than the screen or clipped in its card');
  await a.locator('#form-sell').scrollIntoViewIfNeeded();
  await submit(a, 'form-sell', { product: 'widget', location: 'aisle-1', quantity: 900 });
  const notice = await a.waitForSelector('.notice-rejected >> text=cannot sell 900', WAIT);
  assert.ok(notice);
  await assertNoticeCoversNothing(a);
});

test('while the view replays its history, the page shows progress', async () => {
  // A fresh server whose /health says it is 40% through a replay: the page
  // shows "Loading history… 40%", not an empty warehouse; once it says
  // caught_up, the empty states appear.
  const fresh = await startUp(dataDir(), await freePort());
  const page = await context.newPage();
  try {
    let health = { status: 'recovering', seq: 40, chronicler_head: 100, lag: 60, connected: true };
    await page.route('**/health', (route) => route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(health) }));
    await page.goto(fresh.url);
    await page.waitForSelector('#replay:not([hidden])', WAIT);
    assert.equal(await page.textContent('#replay-text'), 'Loading history… 40%');
    assert.equal(await page.getAttribute('#replay-progress', 'value'), '40');
    await page.waitForFunction(() => document.querySelector('#activity-empty').textContent === 'Loading history… 40%', null, WAIT);
    assert.equal(await page.isVisible('#seed'), false, 'no "load sample stock" before the history is in');
    assert.doesNotMatch(await page.evaluate(() => document.body.innerText), /Nothing has happened yet|The warehouse is empty/);
    await page.screenshot({ path: artifact('demo-replaying.png') });
    health = { status: 'caught_up', seq: 100, chronicler_head: 100, lag: 0, connected: true };
    await page.waitForSelector('#replay', { ...WAIT, state: 'hidden' });
    await page.waitForFunction(() => document.querySelector('#activity-empty').textContent === 'Nothing has happened yet.', null, WAIT);
    assert.equal(await page.isVisible('#seed'), true);
  } finally {
    await page.close();
    await stop(fresh, 'SIGTERM');
  }
});
