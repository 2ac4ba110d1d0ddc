// Access tokens in a real browser (headless Chromium) against the real
// `nodb up --auth-key KEY`: the demo opened with `#token=` (minted by
// `nodb token`, or the link `nodb up` prints) records and shows actions, and
// says when its token has expired; a dispatch the token forbids rejects with
// code `forbidden`; and a page whose client has a 3-second token and a
// `getToken` that mints fresh ones keeps dispatching across the expiries,
// each action applied exactly once. Run after `cargo build`:
//
//   node --test web/e2e/auth.test.js

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { dataDir, freePort, keygen, launchBrowser, mintToken, readLog, startUp, stop } from './harness.js';

const WAIT = { timeout: 20_000 };

let browser;
let context;
let up;
let key;
/** An operator's token (every type, every view, admin), for the tests' own reads. */
let admin;

before(async () => {
  key = await keygen();
  up = await startUp(dataDir(), await freePort(), ['--auth-key', key]);
  admin = await mintToken(key, '--client', 'operator', '--dispatch', '', '--read', '*', '--admin');
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
});

after(async () => {
  await browser?.close();
  if (up) await stop(up, 'SIGTERM');
});

/** The state of view `name`, read with the operator's token. */
async function viewState(name) {
  const res = await fetch(`${up.url}/views/${name}`, { headers: { authorization: `Bearer ${admin}` } });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()).state;
}

test('auth is on: a view needs a token', async () => {
  const res = await fetch(`${up.url}/views/stock`);
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error.code, 'unauthorized');
  assert.ok(await viewState('stock'));
});

test('the demo opened with #token= records a sale and shows it', async () => {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  try {
    await page.goto(`${up.url}/#token=${admin}`);
    await page.waitForFunction(() => document.querySelector('#status')?.textContent.trim() === 'open', null, WAIT);
    const submit = async (form, fields) => {
      for (const [name, value] of Object.entries(fields)) await page.fill(`#${form} [name="${name}"]`, String(value));
      await page.click(`#${form} [type="submit"]`);
    };
    const cell = (quantity) => page.waitForFunction(
      (q) => document.querySelector('#stock-table tr[data-product="widget"] [data-location="aisle-1"]')?.textContent.trim() === String(q),
      quantity, WAIT);
    await submit('form-correct', { product: 'widget', location: 'aisle-1', quantity: 7 });
    await cell(7);
    await submit('form-sell', { product: 'widget', location: 'aisle-1', quantity: 2 });
    await cell(5);
    await page.waitForSelector('#activity li[data-type="sold"]', WAIT);
    assert.equal((await viewState('stock')).products.widget.locations['aisle-1'], 5);
    // The page's actions went in under the token's client: operator.<random>.
    const log = await readLog(up.url, admin);
    const mine = log.filter((a) => a.payload?.product === 'widget');
    assert.deepEqual(mine.map((a) => a.type), ['stock/corrected', 'stock/sold']);
    for (const a of mine) assert.match(a.id, /^operator\.[0-9a-f]{12}:\d+$/);
  } finally {
    await page.close();
  }
});

test('the link nodb up prints opens the demo live', async () => {
  assert.match(up.link, /^http:\/\/127\.0\.0\.1:\d+\/#token=[\w-]+\.[\w-]+\.[\w-]+$/);
  const page = await context.newPage();
  try {
    await page.goto(up.link);
    await page.waitForFunction(() => document.querySelector('#status')?.textContent.trim() === 'open', null, WAIT);
  } finally {
    await page.close();
  }
});

test('the demo opened without a token does not get the views', async () => {
  const page = await context.newPage();
  try {
    await page.goto(up.url);
    await page.waitForFunction(() => document.querySelector('#status')?.textContent.trim() === 'offline', null, WAIT);
    await page.waitForTimeout(1000);
    assert.notEqual((await page.textContent('#status')).trim(), 'open');
  } finally {
    await page.close();
  }
});

test('the demo says when its link has expired', async () => {
  const token = await mintToken(key, '--client', 'operator', '--dispatch', '', '--read', '*', '--ttl', '3s');
  const page = await context.newPage();
  try {
    await page.goto(`${up.url}/#token=${token}`);
    await page.waitForFunction(() => document.querySelector('#status')?.textContent.trim() === 'open', null, WAIT);
    const notice = await page.waitForSelector('.notice:has-text("Access expired")', WAIT);
    assert.match(await notice.textContent(), /new #token= link/);
    // The notice may come a moment before the server's 4401 close: the page
    // then leaves `open` for good.
    await page.waitForFunction(() => document.querySelector('#status')?.textContent.trim() !== 'open', null, WAIT);
    await page.waitForTimeout(1000);
    assert.notEqual((await page.textContent('#status')).trim(), 'open');
    assert.equal(await page.locator('.notice:has-text("Access expired")').count(), 1, 'one notice for all the stores');
  } finally {
    await page.close();
  }
});

test('a dispatch the token forbids rejects with code forbidden; the next one goes through', async () => {
  const token = await mintToken(key, '--client', 'seller', '--dispatch', 'stock/sold', '--read', 'stock');
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  try {
    await page.goto(`${up.url}/health`);
    const result = await page.evaluate(async (token) => {
      const { connect } = await import('/nodb.js');
      const store = connect(location.origin, { view: 'stock', token });
      const unhandled = [];
      window.addEventListener('unhandledrejection', (e) => unhandled.push(String(e.reason)));
      const bad = store.dispatch('stock/corrected', { product: 'forbidden-fruit', location: 'bin', quantity: 5 });
      store.dispatch('stock/destroyed', { product: 'x', location: 'bin', quantity: 1, reason: 'r' }); // unobserved
      const error = await bad.then(() => null, (e) => ({ code: e.code, right: e.right, message: e.message }));
      const seq = await store.dispatch('stock/sold', { product: 'forbidden-fruit', location: 'bin', quantity: 1 }).then((s) => s, (e) => `${e.code}: ${e.message}`);
      await new Promise((r) => setTimeout(r, 300));
      const out = { error, seq, clientId: store.clientId, pending: store.pending, unhandled };
      store.close();
      return out;
    }, token);
    assert.equal(result.error?.code, 'forbidden', JSON.stringify(result));
    assert.match(result.error.message, /\S/);
    assert.match(result.error.right ?? '', /stock\/corrected/, 'the right it lacks');
    assert.equal(typeof result.seq, 'number', `the allowed sale: ${result.seq}`);
    assert.equal(result.pending, 0);
    assert.deepEqual(result.unhandled, []);
    const log = await readLog(up.url, admin);
    assert.deepEqual(log.filter((a) => a.id.startsWith(`${result.clientId}:`)).map((a) => a.type), ['stock/sold']);
    if (process.env.NODB_E2E_VERBOSE) console.log(JSON.stringify(result));
  } finally {
    await page.close();
  }
});

test('with 3-second tokens and getToken, actions before, across and after each expiry apply exactly once', { timeout: 90_000 }, async () => {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  const minted = [];
  await page.exposeFunction('mintToken', async () => {
    const token = await mintToken(key, '--client', 'counter', '--dispatch', 'stock/', '--read', 'stock', '--ttl', '3s');
    minted.push(token);
    return token;
  });
  try {
    // Any page of the server's origin can import the client; /health needs no token.
    await page.goto(`${up.url}/health`);
    const START = 1000;
    const N = 40;
    const result = await page.evaluate(async ({ START, N }) => {
      const { connect } = await import('/nodb.js');
      const store = connect(location.origin, { view: 'stock', getToken: () => window.mintToken() });
      const statuses = [];
      const errors = [];
      store.on('status', (s) => statuses.push(s));
      store.on('error', (e) => errors.push(`${e.code}: ${e.message}`));
      const quantity = () => store.getState()?.products?.counter?.locations?.bin;
      await store.dispatch('stock/corrected', { product: 'counter', location: 'bin', quantity: START }).applied;
      // One sale every 250 ms for 10 s: across three or four token expiries.
      const outcomes = [];
      const sent = [];
      for (let i = 0; i < N; i++) {
        outcomes.push({ pending: true });
        const p = store.dispatch('stock/sold', { product: 'counter', location: 'bin', quantity: 1 });
        sent.push(p.applied.then((seq) => { outcomes[i] = { seq }; }, (e) => { outcomes[i] = { error: `${e.code}: ${e.message}` }; }));
        await new Promise((r) => setTimeout(r, 250));
      }
      // Every action applied (or failed) within 20 s, or the test says which did not.
      await Promise.race([Promise.all(sent), new Promise((r) => setTimeout(r, 20_000))]);
      // Whatever came after the last action's patch has had time to arrive.
      await new Promise((r) => setTimeout(r, 500));
      const out = { outcomes, quantity: quantity(), statuses, errors, clientId: store.clientId, pending: store.pending };
      store.close();
      return out;
    }, { START, N });

    assert.deepEqual(result.outcomes.filter((o) => !('seq' in o)), [], `every action applied (errors: ${result.errors})`);
    assert.equal(new Set(result.outcomes.map((o) => o.seq)).size, N, 'each action has its own seq');
    assert.equal(result.quantity, START - N, 'the page shows each sale applied exactly once');
    assert.equal(result.pending, 0);
    assert.match(result.clientId, /^counter\.[0-9a-f]{12}$/);
    // The stream was closed for the token's expiry and resumed, more than once.
    const reconnects = result.statuses.filter((s) => s === 'offline').length;
    assert.ok(reconnects >= 2, `reconnections: ${JSON.stringify(result.statuses)} errors: ${result.errors}`);
    assert.ok(minted.length >= 3, `tokens minted: ${minted.length}`);
    if (process.env.NODB_E2E_VERBOSE) console.log(JSON.stringify({ statuses: result.statuses, errors: result.errors, minted: minted.length }));

    // The server agrees: the log holds each sale once, under distinct ids.
    assert.equal((await viewState('stock')).products.counter.locations.bin, START - N);
    const sales = (await readLog(up.url, admin)).filter((a) => a.type === 'stock/sold' && a.payload.product === 'counter');
    assert.equal(sales.length, N);
    assert.equal(new Set(sales.map((a) => a.id)).size, N);
    for (const a of sales) assert.ok(a.id.startsWith(`${result.clientId}:`), a.id);
  } finally {
    await page.close();
  }
});
