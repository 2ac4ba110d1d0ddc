// Benchmark: end-to-end latency of nodb in real headless Chromium, from
// `dispatch` in one page to the patch applied in another page.
//
//   cargo build --release -p nodb
//   node web/bench/browser.mjs [--actions 1000] [--rate 200] [--mode both|closed|open] [--with-demo]
//
// Starts `nodb up` (target/release/nodb if built, else target/debug/nodb, or
// $NODB_BIN) on a free loopback port with a fresh data directory, opens two
// pages of the demo's origin in Debian's headless Chromium and, in each,
// imports /nodb.js and connects its own store to the `stock` view:
//   page A  connect(origin, {view: 'stock'})                 dispatches
//   page B  connect(origin, {view: 'stock', readOnly: true}) watches
// Action i is `stock/corrected {product, location: 'L'+i, quantity: i}`;
// page B notes the time at which its state first holds
// /products/<product>/locations/L<i> (in a `subscribe` listener, i.e. just
// after the patch is applied). Both pages use `performance.timeOrigin +
// performance.now()`, one clock for the whole browser (checked below with a
// BroadcastChannel ping-pong).
//
//   closed loop  dispatch i+1 only once page B has applied i: one at a time
//   open loop    dispatch on a fixed schedule (--rate per second) whatever happens
//
// By default the demo's own script (/demo.js) is not run (the request is
// answered with an empty module) so that the pages do only nodb's work;
// --with-demo keeps it, rendering its stock table on every patch.
// Reports p50/p90/p99/max; nothing is asserted.

import { existsSync, rmSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const release = join(ROOT, 'target', 'release', 'nodb');
process.env.NODB_BIN ??= existsSync(release) ? release : join(ROOT, 'target', 'debug', 'nodb');
// harness.js reads NODB_BIN when it is loaded: import it only now.
const { startUp, stop, freePort, dataDir, launchBrowser } = await import('../e2e/harness.js');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const ACTIONS = Number(opt('actions', 1000));
const RATE = Number(opt('rate', 200));
const MODE = opt('mode', 'both');
const WITH_DEMO = args.includes('--with-demo');
const WARMUP = 50;
const WAIT = { timeout: 120_000 };

// --- statistics ---------------------------------------------------------------

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
function stats(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  return { n: s.length, p50: quantile(s, 0.5), p90: quantile(s, 0.9), p99: quantile(s, 0.99), max: s.at(-1), mean: s.reduce((a, b) => a + b, 0) / s.length };
}
const ms = (x) => (x == null ? '-' : x.toFixed(x < 10 ? 2 : 1));
function table(title, rows) {
  console.log(`\n${title}`);
  console.log(`${'ms'.padEnd(44)}${['n', 'p50', 'p90', 'p99', 'max', 'mean'].map((h) => h.padStart(9)).join('')}`);
  for (const [label, xs] of rows) {
    const st = stats(xs);
    if (!st) { console.log(`${label.padEnd(44)}${'(none)'.padStart(9)}`); continue; }
    console.log(`${label.padEnd(44)}${String(st.n).padStart(9)}${[st.p50, st.p90, st.p99, st.max, st.mean].map((v) => ms(v).padStart(9)).join('')}`);
  }
}

// --- in-page code ---------------------------------------------------------------

/** Page A and B: imports nodb.js, connects a store, waits for its snapshot. */
async function setUp(page, readOnly) {
  await page.evaluate(async (readOnly) => {
    const { connect } = await import('/nodb.js');
    const now = () => performance.timeOrigin + performance.now();
    const B = {
      store: null, now, product: null, count: 0, next: 0, seen: [],
      msgs: [], // [arrived, done, length] of every socket message
      bc: new BroadcastChannel('nodb-bench'),
    };
    window.__bench = B;
    // Where the time goes in this page: a WebSocket whose message handler
    // (the store's: JSON parse, applyPatch, listeners) is timed.
    class TimedWebSocket extends WebSocket {
      set onmessage(fn) {
        super.onmessage = fn && ((ev) => {
          const t0 = now();
          fn(ev);
          const t1 = now();
          if (B.product) B.msgs.push([t0, t1, ev.data.length]);
        });
      }
      get onmessage() { return super.onmessage; }
    }
    const store = connect(location.origin, { view: 'stock', readOnly, WebSocket: TimedWebSocket });
    B.store = store;
    store.subscribe(() => {
      const t = now();
      if (!B.product) return;
      const locs = store.getState()?.products?.[B.product]?.locations;
      if (!locs) return;
      while (B.next < B.count && Object.prototype.hasOwnProperty.call(locs, `L${B.next}`)) {
        B.seen[B.next] = t;
        if (readOnly) B.bc.postMessage({ seen: B.next });
        B.next++;
      }
    });
    // Clock check: answer pings with this page's clock.
    B.bc.addEventListener('message', (e) => { if (e.data.ping != null && readOnly) B.bc.postMessage({ pong: e.data.ping, t: now() }); });
  }, readOnly);
  await page.waitForFunction(() => window.__bench.store.getState() !== null && window.__bench.store.status === 'open', null, WAIT);
}

/** Page A or B: starts watching `product` for markers L0..L(count-1). */
function watch(page, product, count) {
  return page.evaluate(([product, count]) => {
    const B = window.__bench;
    Object.assign(B, { product, count, next: 0, seen: [], msgs: [] });
  }, [product, count]);
}

/** Page A: a BroadcastChannel ping-pong with page B: the offset between the two clocks. */
function clockCheck(page) {
  return page.evaluate(async () => {
    const { bc, now } = window.__bench;
    const out = [];
    for (let i = 0; i < 50; i++) {
      const t1 = now();
      const t2 = await new Promise((ok) => {
        const f = (e) => { if (e.data.pong === i) { bc.removeEventListener('message', f); ok(e.data.t); } };
        bc.addEventListener('message', f);
        bc.postMessage({ ping: i });
      });
      const t3 = now();
      out.push({ rtt: t3 - t1, offset: t2 - (t1 + t3) / 2 });
    }
    out.sort((a, b) => a.rtt - b.rtt);
    return { best: out[0], medianRtt: out[25].rtt };
  });
}

/**
 * Page A: dispatches `count` actions for `product`; closed loop (rate 0):
 * each once page B has applied the previous one; open loop: at `rate` per
 * second on a fixed schedule. Returns per action {t0 (before dispatch),
 * t1 (dispatch returned), ack, applied (in page A)}.
 */
function run(page, product, count, rate) {
  return page.evaluate(async ([product, count, rate]) => {
    const { store, bc, now } = window.__bench;
    let seenUpTo = -1;
    let wake = null;
    const onSeen = (e) => { if (e.data.seen != null) { seenUpTo = Math.max(seenUpTo, e.data.seen); wake?.(); } };
    bc.addEventListener('message', onSeen);
    const recs = [];
    const pending = [];
    const sleep = (d) => new Promise((ok) => setTimeout(ok, d));
    const start = now() + 20;
    for (let i = 0; i < count; i++) {
      if (rate > 0) {
        const d = start + (i * 1000) / rate - now();
        if (d > 0.5) await sleep(d);
      }
      const r = {};
      r.t0 = now();
      const p = store.dispatch('stock/corrected', { product, location: `L${i}`, quantity: i });
      r.t1 = now();
      recs.push(r);
      pending.push(p.then(() => { r.ack = now(); }), p.applied.then(() => { r.applied = now(); }));
      if (rate === 0) {
        while (seenUpTo < i) await new Promise((ok) => { wake = ok; });
        wake = null;
      }
    }
    const end = now();
    await Promise.all(pending);
    bc.removeEventListener('message', onSeen);
    return { recs, seconds: (end - recs[0].t0) / 1000 };
  }, [product, count, rate]);
}

/** The chronicler's fsync and batch counters (`/chronicler/metrics`), or null. */
async function chronicler(url) {
  try {
    const text = await (await fetch(`${url}/chronicler/metrics`)).text();
    const num = (name) => Number(text.match(new RegExp(`^${name} (\\S+)$`, 'm'))?.[1]);
    return {
      fsyncSum: num('nodb_chronicler_fsync_seconds_sum'), fsyncCount: num('nodb_chronicler_fsync_seconds_count'),
      batchSum: num('nodb_chronicler_batch_size_sum'), batchCount: num('nodb_chronicler_batch_size_count'),
    };
  } catch { return null; }
}

/** Runs one phase and prints its table. */
async function phase(a, b, name, product, count, rate) {
  const m0 = await chronicler(UP_URL);
  await watch(a, product, count);
  await watch(b, product, count);
  const { recs, seconds } = await run(a, product, count, rate);
  await b.waitForFunction((n) => window.__bench.next >= n, count, WAIT);
  await a.waitForFunction((n) => window.__bench.next >= n, count, WAIT);
  const { seen, msgs } = await b.evaluate(() => ({ seen: window.__bench.seen, msgs: window.__bench.msgs }));
  const seenA = await a.evaluate(() => window.__bench.seen);
  const label = rate > 0 ? `${name}: ${count} actions scheduled at ${rate}/s, achieved ${(count / seconds).toFixed(0)}/s` : `${name}: ${count} actions, ${(count / seconds).toFixed(0)}/s`;
  const tenth = Math.max(1, Math.floor(count / 10));
  const lat = recs.map((r, i) => seen[i] - r.t0);
  table(label, [
    ['dispatch (A) → applied in page B', lat],
    [`  same, first ${tenth} actions`, lat.slice(0, tenth)],
    [`  same, last ${tenth} actions`, lat.slice(-tenth)],
    ['dispatch (A) → ack in page A', recs.map((r) => r.ack - r.t0)],
    ['dispatch (A) → patch applied to A\'s state', recs.map((r, i) => seenA[i] - r.t0)],
    ['dispatch (A) → .applied resolved in page A', recs.map((r) => r.applied - r.t0)],
    ['ack − patch in A (>0: ack came later)', recs.map((r, i) => r.ack - seenA[i])],
    ['dispatch() call itself (A, synchronous)', recs.map((r) => r.t1 - r.t0)],
    ['page B: one message (parse+apply+listeners)', msgs.map(([t0, t1]) => t1 - t0)],
  ]);
  const m1 = await chronicler(UP_URL);
  if (m0 && m1 && m1.fsyncCount > m0.fsyncCount) {
    const n = m1.fsyncCount - m0.fsyncCount;
    console.log(`chronicler: ${n} fdatasyncs, mean ${((1000 * (m1.fsyncSum - m0.fsyncSum)) / n).toFixed(2)} ms, mean ${((m1.batchSum - m0.batchSum) / (m1.batchCount - m0.batchCount)).toFixed(2)} actions per batch`);
  }
  if (msgs.length) {
    const kb = msgs.map((m) => m[2] / 1024);
    console.log(`page B received ${msgs.length} messages while watching; mean ${(kb.reduce((x, y) => x + y, 0) / kb.length).toFixed(2)} KiB each`);
  }
}

// --- main ---------------------------------------------------------------------------

const data = dataDir();
const port = await freePort();
let up;
let browser;
let UP_URL;
try {
  up = await startUp(data, port);
  UP_URL = up.url;
  browser = await launchBrowser();
  const context = await browser.newContext();
  if (!WITH_DEMO) {
    await context.route('**/demo.js', (route) => route.fulfill({ status: 200, contentType: 'text/javascript', body: '// demo disabled by web/bench/browser.mjs\n' }));
  }
  const open = async () => {
    const page = await context.newPage();
    page.on('pageerror', (e) => console.error('page error:', e.message));
    await page.goto(up.url);
    return page;
  };
  const a = await open();
  const b = await open();
  await setUp(b, true);
  await setUp(a, false);
  const version = browser.version();
  const vis = await Promise.all([a, b].map((p) => p.evaluate(() => document.visibilityState)));
  console.log(`nodb: ${process.env.NODB_BIN}; data ${data}; ${up.url}`);
  console.log(`Chromium ${version} headless; pages ${vis.join('/')}; demo.js ${WITH_DEMO ? 'running' : 'disabled'}; clock: performance.timeOrigin + performance.now()`);
  const clock = await clockCheck(a);
  console.log(`clock check (BroadcastChannel A→B→A, best of 50): rtt ${clock.best.rtt.toFixed(3)} ms, B−A offset ${clock.best.offset.toFixed(3)} ms (median rtt ${clock.medianRtt.toFixed(3)} ms)`);

  await phase(a, b, 'warm-up', 'warmup', WARMUP, 0);
  if (MODE === 'both' || MODE === 'closed') await phase(a, b, 'CLOSED LOOP (one at a time)', 'bench', ACTIONS, 0);
  if (MODE === 'both' || MODE === 'open') await phase(a, b, 'OPEN LOOP', 'bench-open', ACTIONS, RATE);
  const seq = await b.evaluate(() => window.__bench.store.seq);
  console.log(`\nfinal seq ${seq}`);
} finally {
  await browser?.close();
  if (up) await stop(up, 'SIGTERM');
  rmSync(data, { recursive: true, force: true });
}
