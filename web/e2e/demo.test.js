// The warehouse demo in a real browser (Debian's headless Chromium, driven
// by playwright-core) against the real `nodb up`: two pages stay in sync, a
// rejected action shows its notice, a product under its threshold is
// reordered by the envoy and shown live, the cascaded views follow, actions dispatched while the server is
// down are applied exactly once after it comes back, and pages catch up
// after a restart. Run after `cargo build` (or `cargo nextest run`):
//
//   node --test web/e2e/
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
  const seqA = await a.textContent('#seq');
  await b.waitForFunction((s) => document.querySelector('#seq').textContent === s, seqA, WAIT);
  // The activity feed shows the sale in both pages.
  await a.waitForSelector('#activity li[data-seq="2"]', WAIT);
  await b.waitForSelector('#activity li[data-seq="2"]', WAIT);
});

test('a rejected action shows its notice', async () => {
  const [a] = pages;
  await submit(a, 'form-sell', { product: 'widget', location: 'aisle-1', quantity: 500 });
  const notice = await a.waitForSelector('.notice-rejected', WAIT);
  assert.match(await notice.textContent(), /cannot sell 500/);
});

test('a product that falls below its threshold is reordered, live in every page', async () => {
  const [a, b] = pages;
  await submit(a, 'form-correct', { product: 'gizmo', location: 'aisle-1', quantity: 10 });
  await cell(a, 'gizmo', 'aisle-1', 10);
  await submit(a, 'form-threshold', { product: 'gizmo', threshold: 5, quantity: 20 });
  await b.waitForSelector('#reorder-table tr[data-product="gizmo"][data-status="ok"]', WAIT);
  await submit(b, 'form-sell', { product: 'gizmo', location: 'aisle-1', quantity: 6 });
  // The reorder envoy (run by `nodb up`) orders from the demo supplier and
  // records reorder/placed; both pages show it.
  for (const page of [a, b]) {
    const row = await page.waitForSelector('#reorder-table tr[data-product="gizmo"][data-status="placed"]', WAIT);
    assert.match(await row.textContent(), /20 ordered · ref \S+/);
    await page.waitForSelector('#stock-table tr[data-product="gizmo"] [data-reorder="placed"]', WAIT);
    await page.waitForSelector('#activity li[data-type="reorder_placed"]', WAIT);
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
    assert.ok(low);
    const sources = await page.textContent('#lowstock-sources');
    assert.match(sources, /^lowstock reflects .*stock @ \d+/);
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
