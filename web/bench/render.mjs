// Benchmark: applying a change and re-rendering a React + react-redux table
// in headless Chromium, with the client as it is ("after") and as it was at
// a git revision ("before", default HEAD: the client before identity was
// kept across resyncs). No server: each page's store is given a WebSocket
// stand-in through which the benchmark delivers the stream's messages.
//
//   node web/bench/render.mjs [--before HEAD] [--rows 1000] [--resync-rows 10000] [--repeats 40]
//
// The app (one per version, bundled with esbuild, React's production build):
// `<Provider store={createReduxStore(stock)}>`, a table of one memoized row
// per product, each row `useSelector((s) => s?.products[name])`.
//
//   patch   a state of --rows products, then one patch per repeat changing
//           one product's total (a different product each time)
//   resync  a state of --resync-rows products, then a snapshot of the very
//           same content per repeat (what a resync after a reconnection
//           delivers when nothing changed)
//
// For each: median and p90 ms of `apply` (the socket message handled:
// JSON.parse, the patch or the snapshot, the store's listeners, react-redux's
// subscription checks) and `render` (from there until React has committed,
// a macrotask later), and the rows re-rendered per message. Reports
// figures; asserts nothing.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { launchBrowser } from '../e2e/harness.js';

const WEB = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const BEFORE = opt('before', 'HEAD');
const ROWS = Number(opt('rows', 1000));
const RESYNC_ROWS = Number(opt('resync-rows', 10000));
const REPEATS = Number(opt('repeats', 40));

/** The client's files at git revision `rev`, written to a temporary directory. */
function clientAt(rev) {
  const dir = mkdtempSync(join(tmpdir(), 'nodb-before-'));
  mkdirSync(join(dir, 'nodb'));
  const files = execFileSync('git', ['ls-tree', '--name-only', `${rev}:web/nodb`], { cwd: resolve(WEB, '..'), encoding: 'utf8' }).split('\n').filter((f) => f.endsWith('.js'));
  for (const f of ['nodb.js', ...files.map((m) => `nodb/${m}`)]) {
    writeFileSync(join(dir, f), execFileSync('git', ['show', `${rev}:web/${f}`], { cwd: resolve(WEB, '..'), encoding: 'utf8' }));
  }
  return dir;
}

const APP = `
import { memo } from 'react';
import { createRoot } from 'react-dom/client';
import { Provider, useSelector } from 'react-redux';
import { connect, createReduxStore } from 'nodb';

let socket = null;
class BenchSocket {
  constructor() { socket = this; setTimeout(() => this.onopen?.({})); }
  send() {}
  close() {}
}
const storage = { map: new Map(), getItem(k) { return this.map.get(k) ?? null; }, setItem(k, v) { this.map.set(k, v); }, removeItem(k) { this.map.delete(k); } };
const stock = connect('http://bench.invalid', { view: 'stock', WebSocket: BenchSocket, storage, locks: null, readOnly: true });
let rendered = 0;
const Row = memo(function Row({ name }) {
  const p = useSelector((s) => s?.products[name]);
  rendered++;
  return <tr><td>{name}</td><td>{p?.total}</td><td>{p ? Object.keys(p.locations).length : 0}</td></tr>;
});
function Table() {
  const names = useSelector((s) => Object.keys(s?.products ?? {}).join(','));
  return <table><tbody>{names ? names.split(',').map((n) => <Row key={n} name={n} />) : null}</tbody></table>;
}
const root = document.createElement('div');
document.body.append(root);
createRoot(root).render(<Provider store={createReduxStore(stock)}><Table /></Provider>);

const macrotask = () => new Promise((r) => { const c = new MessageChannel(); c.port1.onmessage = () => r(); c.port2.postMessage(0); });
window.bench = {
  ready: () => socket !== null && stock.status === 'open',
  /** Delivers message text; resolves with the times and the rows rendered. */
  async deliver(text) {
    await macrotask();
    rendered = 0;
    const t0 = performance.now();
    socket.onmessage({ data: text });
    const t1 = performance.now();
    await macrotask();
    const t2 = performance.now();
    return { apply: t1 - t0, render: t2 - t1, rows: rendered };
  },
};
`;

async function bundle(clientDir) {
  const out = await build({
    stdin: { contents: APP, loader: 'jsx', resolveDir: WEB },
    bundle: true,
    write: false,
    format: 'iife',
    jsx: 'automatic',
    target: 'es2022',
    define: { 'process.env.NODE_ENV': '"production"' },
    plugins: [{ name: 'nodb', setup: (b) => b.onResolve({ filter: /^nodb$/ }, () => ({ path: join(clientDir, 'nodb.js') })) }],
    logLevel: 'silent',
  });
  return out.outputFiles[0].text;
}

const stockState = (n, version = 0) => {
  const products = {};
  for (let i = 0; i < n; i++) products[`p${i}`] = { locations: { shelf: 10, back: 5 + (i % 7) }, total: 15 + (i % 7) + (i === version ? 1 : 0) };
  return { products, total: n * 18 };
};

const quantile = (xs, q) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]; };
const f = (x) => x.toFixed(x < 10 ? 2 : 1);

async function run(browser, code, scenario) {
  const page = await browser.newPage();
  await page.setContent('<!doctype html><meta charset=utf-8><body></body>');
  await page.addScriptTag({ content: code });
  await page.waitForFunction(() => window.bench.ready());
  const results = [];
  if (scenario === 'patch') {
    await page.evaluate((t) => window.bench.deliver(t), JSON.stringify({ type: 'snapshot', seq: 1, state: stockState(ROWS, -1) }));
    for (let i = 0; i < REPEATS + 5; i++) {
      const p = `p${(i * 37) % ROWS}`;
      const msg = JSON.stringify({ type: 'patch', seq: i + 2, ops: [{ op: 'replace', path: `/products/${p}/total`, value: 1000 + i }] });
      const r = await page.evaluate((t) => window.bench.deliver(t), msg);
      if (i >= 5) results.push(r); // warm-up
    }
  } else {
    const text = (seq) => JSON.stringify({ type: 'snapshot', seq, state: stockState(RESYNC_ROWS, -1) });
    await page.evaluate((t) => window.bench.deliver(t), text(1));
    for (let i = 0; i < Math.max(5, Math.floor(REPEATS / 4)) + 2; i++) {
      const r = await page.evaluate((t) => window.bench.deliver(t), text(i + 2));
      if (i >= 2) results.push(r);
    }
  }
  await page.close();
  return results;
}

const beforeDir = clientAt(BEFORE);
try {
  const code = { before: await bundle(beforeDir), after: await bundle(WEB) };
  const browser = await launchBrowser();
  try {
    console.log(`React + react-redux table in headless Chromium; before = the client at ${BEFORE}, after = the working tree`);
    console.log('scenario                               version   apply p50   p90   render p50   p90   rows re-rendered (median)');
    for (const [scenario, label] of [['patch', `patch: one change in ${ROWS} rows`], ['resync', `resync: ${RESYNC_ROWS} unchanged rows`]]) {
      for (const version of ['before', 'after']) {
        const r = await run(browser, code[version], scenario);
        const col = (k, q) => f(quantile(r.map((x) => x[k]), q));
        console.log(`${label.padEnd(38)} ${version.padEnd(8)} ${col('apply', 0.5).padStart(9)} ${col('apply', 0.9).padStart(6)} ${col('render', 0.5).padStart(11)} ${col('render', 0.9).padStart(6)}   ${quantile(r.map((x) => x.rows), 0.5)}`);
      }
    }
    console.log('(ms; n per row: patch', REPEATS, ', resync', Math.max(5, Math.floor(REPEATS / 4)), ')');
  } finally {
    await browser.close();
  }
} finally {
  rmSync(beforeDir, { recursive: true, force: true });
}
