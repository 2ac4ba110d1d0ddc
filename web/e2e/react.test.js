// The client in React apps, in headless Chromium against the real `nodb up`
// (issue 19): a React + react-redux app that also uses nodb/react's hooks
// (e2e/apps/react-redux-app.jsx), and a Redux Toolkit app
// (e2e/apps/rtk-app.jsx), both bundled here with esbuild's JS API (each
// page loads the demo's document, whose /demo.js is answered with the app) from the
// package's own entry points (`nodb`, `nodb/react`) in React's development
// build (which warns on misuse of useSyncExternalStore). Both pages follow
// the same `stock` view. Asserted: one changed product re-renders one row
// in each table; a resync (a snapshot, forced by a corrupt patch injected
// into the page's socket) with no change re-renders none and keeps the very
// state object; rejections are surfaced (onError), a thunk given to the
// facade fails with a clear error, createAsyncThunk's lifecycle stays local;
// actions dispatched while the server is down are applied exactly once
// after it comes back; and no unhandled rejection, page error or console
// error (but the browser's own "WebSocket connection failed" while the
// server is down). Run after `cargo build`:
//
//   node --test web/e2e/react.test.js

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { dataDir, freePort, launchBrowser, readLog, startUp, stop } from './harness.js';

const WAIT = { timeout: 20_000 };
const HERE = dirname(fileURLToPath(import.meta.url));
const APPS = ['react-redux-app', 'rtk-app'];
const PRODUCTS = Array.from({ length: 20 }, (_, i) => `p${String(i).padStart(2, '0')}`);

let browser;
let up;
let data;
let port;
/** name -> { page, problems, snapshots, sockets } */
const apps = {};

/** Bundles an app (its imports of `nodb` resolve through web/package.json's exports map). */
async function bundle(name) {
  const out = await build({
    entryPoints: [join(HERE, 'apps', `${name}.jsx`)],
    bundle: true,
    write: false,
    format: 'esm',
    jsx: 'automatic',
    target: 'es2022',
    define: { 'process.env.NODE_ENV': '"development"' },
    logLevel: 'silent',
  });
  return out.outputFiles[0].text;
}

/** Opens app `name` at `/e2e/<name>.html` of the server's origin (served by the test). */
async function openApp(name, code) {
  const page = await browser.newPage();
  const entry = { page, problems: [], snapshots: 0, sockets: [] };
  page.on('pageerror', (e) => entry.problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error' && m.type() !== 'warning') return;
    const text = m.text();
    // The browser's own report of a refused socket while the server is down.
    if (/WebSocket connection to .* failed/.test(text)) return;
    entry.problems.push(`console ${m.type()}: ${text}`);
  });
  // The document is the demo's page, from the server (Chromium lets only a
  // page of a local origin open a socket to 127.0.0.1); its script is the app.
  await page.route(`${up.url}/demo.js`, (r) => r.fulfill({ contentType: 'text/javascript', body: code }));
  // The page's stream goes through the test, which counts snapshots and can inject a message.
  await page.routeWebSocket(/\/views\/stock\/stream/, (ws) => {
    const server = ws.connectToServer();
    entry.sockets.push(ws);
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => {
      if (String(m).startsWith('{"type":"snapshot"')) entry.snapshots++;
      ws.send(m);
    });
    ws.onClose((code, reason) => server.close({ code, reason }));
    server.onClose((code, reason) => ws.close({ code, reason }));
  });
  await page.goto(up.url);
  try {
    await waitStatus(page, 'open');
  } catch (e) {
    const shown = await page.evaluate(() => document.querySelector('#status')?.outerHTML ?? document.body.innerHTML.slice(0, 300));
    throw new Error(`${name} did not connect: ${e.message}\n${shown}\n${entry.problems.join('\n')}`);
  }
  apps[name] = entry;
  return entry;
}

const waitStatus = (page, status) => page.waitForFunction((s) => document.querySelector('#status')?.dataset.status === s, status, WAIT);

/** Waits until every table of `page` shows `total` for `product`. */
function total(page, product, value) {
  return page.waitForFunction(([p, v]) => {
    const cells = [...document.querySelectorAll(`table tr[data-product="${p}"] .total`)];
    return cells.length > 0 && cells.every((c) => c.textContent === String(v));
  }, [product, value], WAIT);
}

/** The renders counted since the last reset, after letting stray renders happen. */
async function rendersAfterSettling(page) {
  await page.waitForTimeout(300);
  return page.evaluate(() => JSON.parse(JSON.stringify(window.app.renders)));
}

before(async () => {
  data = dataDir();
  port = await freePort();
  up = await startUp(data, port);
  browser = await launchBrowser();
  const code = await Promise.all(APPS.map(bundle));
  for (const [i, name] of APPS.entries()) await openApp(name, code[i]);
});

after(async () => {
  await browser?.close();
  if (up) await stop(up, 'SIGTERM');
});

test('one changed product re-renders one row in each table', async () => {
  const a = apps['react-redux-app'].page;
  const b = apps['rtk-app'].page;
  for (const p of PRODUCTS) {
    const r = await a.evaluate((product) => window.app.dispatch({ type: 'stock/corrected', payload: { product, location: 'shelf', quantity: 10 } }), p);
    assert.deepEqual(r, { returnedTheAction: true, hasPromises: true }, 'dispatch returns the action; dispatched() has its promises');
  }
  for (const page of [a, b]) {
    await total(page, PRODUCTS.at(-1), 10);
    await page.waitForFunction((n) => document.querySelectorAll('tr[data-product]').length === n, PRODUCTS.length * (page === a ? 2 : 1), WAIT);
  }
  await a.waitForTimeout(300);
  for (const page of [a, b]) await page.evaluate(() => window.app.resetRenders());

  await b.evaluate(() => window.app.sell('p07', 3)); // through the RTK store's middleware
  await total(a, 'p07', 7);
  await total(b, 'p07', 7);
  assert.deepEqual(await rendersAfterSettling(a), { redux: { p07: 1 }, view: { p07: 1 } });
  assert.deepEqual(await rendersAfterSettling(b), { rtk: { p07: 1 } });
});

test('a resync that changes nothing re-renders nothing and keeps the state object', async () => {
  for (const name of APPS) {
    const { page } = apps[name];
    const entry = apps[name];
    await page.evaluate(() => { window.app.resetRenders(); window.app.keepState(); });
    const snapshots = entry.snapshots;
    const seq = await page.evaluate(() => window.app.seq());
    // A patch whose test fails: the store cannot trust its state and asks for a snapshot.
    entry.sockets.at(-1).send(JSON.stringify({ type: 'patch', seq: seq + 1, ops: [{ op: 'test', path: '/total', value: -1 }] }));
    await page.waitForFunction(() => window.app.errorCodes.includes('patch_failed'), null, WAIT);
    const deadline = Date.now() + 20_000;
    while (entry.snapshots === snapshots && Date.now() < deadline) await page.waitForTimeout(20);
    assert.equal(entry.snapshots, snapshots + 1, `${name}: resynced from a snapshot`);
    await waitStatus(page, 'open');
    assert.deepEqual(await rendersAfterSettling(page), {}, `${name}: no row re-rendered`);
    assert.equal(await page.evaluate(() => window.app.sameState()), true, `${name}: the very same state object`);
  }
});

test('rejections are surfaced, thunks refused clearly, createAsyncThunk stays local', async () => {
  const a = apps['react-redux-app'].page;
  const b = apps['rtk-app'].page;
  await a.evaluate(() => window.app.dispatch({ type: 'stock/sold', payload: { product: 'p01', location: 'shelf', quantity: 500 } }));
  await a.waitForFunction(() => /stock\/sold: rejected: /.test(document.querySelector('#errors')?.textContent), null, WAIT);
  assert.match(await a.evaluate(() => window.app.dispatchThunk()), /thunk \(a function\) was dispatched/);

  assert.deepEqual(await b.evaluate(() => window.app.load()), { type: 'stock/load/fulfilled', meta: 'object' });
  await b.waitForFunction(() => document.querySelector('#status').dataset.loaded === 'loaded', null, WAIT);
  await b.evaluate(() => window.app.sell('p02', 500));
  await b.waitForFunction(() => /stock\/sold: rejected: /.test(document.querySelector('#errors')?.textContent), null, WAIT);
  const log = await readLog(up.url);
  assert.deepEqual(log.filter((a) => a.type.startsWith('stock/load')), [], 'no lifecycle action reached the server');
});

test('actions dispatched while the server is down are applied once it is back', async () => {
  const a = apps['react-redux-app'].page;
  const b = apps['rtk-app'].page;
  await stop(up, 'SIGTERM');
  await waitStatus(a, 'offline');
  await waitStatus(b, 'offline');
  await a.evaluate(() => window.app.dispatch({ type: 'stock/sold', payload: { product: 'p11', location: 'shelf', quantity: 1 } }));
  await b.evaluate(() => window.app.sell('p12', 2));
  for (const page of [a, b]) await page.waitForFunction(() => document.querySelector('#status').dataset.pending === '1', null, WAIT);

  up = await startUp(data, port);
  for (const page of [a, b]) {
    await waitStatus(page, 'open');
    await page.waitForFunction(() => document.querySelector('#status').dataset.pending === '0', null, WAIT);
    await total(page, 'p11', 9);
    await total(page, 'p12', 8);
  }
  const sales = (await readLog(up.url)).filter((x) => x.type === 'stock/sold' && ['p11', 'p12'].includes(x.payload.product));
  assert.deepEqual(sales.map((x) => x.payload.product).sort(), ['p11', 'p12'], 'each exactly once');
});

test('no unhandled rejection, page error or console error', async () => {
  for (const name of APPS) {
    const { page, problems } = apps[name];
    assert.deepEqual(await page.evaluate(() => window.app.unhandled), [], `${name}: unhandled rejections`);
    assert.deepEqual(problems, [], `${name}: page and console errors`);
  }
});
