// Benchmark: the cost of applying a JSON Patch to a large state in Node.
//
//   node web/bench/apply.mjs [--repeats N] [--sizes 1000,100000,1000000] [--budget-ms MS]
//
// Compares, side by side in one run (interleaved, so machine noise hits them
// all alike), per applied patch:
//   nodb      nodb.js `applyPatch(doc, ops)`: immutable, structural sharing
//   fjp       fast-json-patch `applyPatch(doc, ops, false, false)`: immutable
//             by deep-cloning the whole document (JSON.parse(JSON.stringify))
//   clone+mut `structuredClone(doc)` then fast-json-patch's mutating apply
//   in-place  fast-json-patch's mutating apply on a private copy: not
//             immutable at all, the floor of what applying costs
// Reports medians over repeats (µs per patch) and the fjp / nodb ratio.
// Nothing is asserted (except that the implementations agree).

import { applyPatch as nodbApply } from '../nodb.js';
import jsonpatch from 'fast-json-patch';

// --- arguments --------------------------------------------------------------

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const REPEATS = Number(opt('repeats', 11));
const SIZES = opt('sizes', '1000,100000,1000000').split(',').map(Number);
const BUDGET_MS = Number(opt('budget-ms', 8000)); // rough time per case
const MIN_SAMPLE_MS = 20; // a sample repeats a fast patch until it lasts this long

// --- states and patches -----------------------------------------------------

/** {k0: {qty, name}, … k(n-1)} */
function flatState(n) {
  const s = {};
  for (let i = 0; i < n; i++) s[`k${i}`] = { qty: i, name: `item ${i}` };
  return s;
}

/** Like the warehouse `stock` view: products × locations. */
function nestedState(products, locations) {
  const ps = {};
  let total = 0;
  for (let p = 0; p < products; p++) {
    const locs = {};
    let t = 0;
    for (let l = 0; l < locations; l++) { locs[`l${l}`] = l; t += l; }
    ps[`p${p}`] = { locations: locs, total: t };
    total += t;
  }
  return { products: ps, total };
}

const flatCases = (n) => {
  const spread = (j) => `k${Math.floor((j * n) / 10) + 3}`; // 10 keys spread over the state
  return [
    ['one-leaf replace /k5/qty', [{ op: 'replace', path: '/k5/qty', value: -1 }]],
    ['10-op patch (10 keys)', Array.from({ length: 10 }, (_, j) => (j % 3 === 2
      ? { op: 'replace', path: `/${spread(j)}/name`, value: `renamed ${j}` }
      : { op: 'replace', path: `/${spread(j)}/qty`, value: -j }))],
    ['add a new key /knew', [{ op: 'add', path: '/knew', value: { qty: 1, name: 'new' } }]],
  ];
};

const nestedCases = () => [
  ['one-leaf replace', [{ op: 'replace', path: '/products/p5/locations/l7', value: -1 }]],
  // What the server sends for one stock/corrected: the leaf and both totals.
  ['stock/corrected (3 ops)', [
    { op: 'replace', path: '/products/p5/locations/l7', value: 1000 },
    { op: 'replace', path: '/products/p5/total', value: 1 },
    { op: 'replace', path: '/total', value: 2 },
  ]],
  ['10-op patch (10 products)', Array.from({ length: 10 }, (_, j) => (
    { op: 'replace', path: `/products/p${j * 97}/locations/l${j * 7}`, value: -j }))],
  ['add a new location', [{ op: 'add', path: '/products/p5/locations/lnew', value: 1 }]],
];

// --- the implementations ----------------------------------------------------

function implementations(state, ops) {
  const privateCopy = structuredClone(state); // in-place mutates its own copy
  return {
    nodb: () => nodbApply(state, ops),
    fjp: () => jsonpatch.applyPatch(state, ops, false, false).newDocument,
    'clone+mut': () => jsonpatch.applyPatch(structuredClone(state), ops, false, true).newDocument,
    'in-place': () => jsonpatch.applyPatch(privateCopy, ops, false, true).newDocument,
  };
}

/** Checks (once, not timed) that the implementations agree and that nodb shares and does not mutate. */
function check(state, ops, impls) {
  const before = JSON.stringify(state);
  const results = Object.fromEntries(Object.entries(impls).map(([k, f]) => [k, f()]));
  const want = JSON.stringify(results.fjp);
  for (const [k, r] of Object.entries(results)) {
    if (JSON.stringify(r) !== want) throw new Error(`${k} disagrees with fast-json-patch`);
  }
  if (JSON.stringify(state) !== before) throw new Error('the input state was mutated');
  const untouched = Object.keys(state).find((k) => !ops.some((o) => o.path.startsWith(`/${k}/`) || o.path === `/${k}`));
  if (untouched && results.nodb[untouched] !== state[untouched]) throw new Error('nodb did not share an untouched subtree');
}

// --- timing -----------------------------------------------------------------

let sink = 0; // keeps results alive
const now = () => performance.now();
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

/** Runs the implementations interleaved; returns {name: median µs per patch}. */
function bench(impls) {
  const names = Object.keys(impls);
  // Warm up and calibrate: how many calls make one sample last MIN_SAMPLE_MS.
  const iters = {};
  let oneRound = 0;
  for (const n of names) {
    const f = impls[n];
    let t0 = now();
    f(); f(); f();
    let per = (now() - t0) / 3;
    if (per < 1) { // fast: warm up the JIT a bit more and measure again
      for (let i = 0; i < 200; i++) f();
      t0 = now();
      for (let i = 0; i < 200; i++) f();
      per = (now() - t0) / 200;
    }
    iters[n] = Math.max(1, Math.ceil(MIN_SAMPLE_MS / Math.max(per, 1e-4)));
    oneRound += iters[n] * per;
  }
  const repeats = Math.max(3, Math.min(REPEATS, Math.floor(BUDGET_MS / oneRound)));
  const samples = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < repeats; r++) {
    // Rotate the order each round so no implementation always runs after a heavy one.
    for (let j = 0; j < names.length; j++) {
      const n = names[(j + r) % names.length];
      const f = impls[n];
      const k = iters[n];
      const t0 = now();
      for (let i = 0; i < k; i++) sink ^= f() === null ? 1 : 0;
      samples[n].push(((now() - t0) * 1000) / k);
    }
  }
  return { med: Object.fromEntries(names.map((n) => [n, median(samples[n])])), repeats };
}

// --- output -----------------------------------------------------------------

const fmt = (us) => (us >= 100_000 ? `${(us / 1000).toFixed(0)} ms` : us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(1)} µs`);
const pad = (s, w) => String(s).padStart(w);
const COLS = ['nodb', 'fjp', 'clone+mut', 'in-place'];

function header(title) {
  console.log(`\n${title}`);
  console.log(`${'case'.padEnd(42)}${COLS.map((c) => pad(c, 12)).join('')}${pad('fjp/nodb', 10)}${pad('reps', 6)}`);
}

function row(label, state, ops) {
  const impls = implementations(state, ops);
  check(state, ops, impls);
  const { med, repeats } = bench(impls);
  console.log(`${label.padEnd(42)}${COLS.map((c) => pad(fmt(med[c]), 12)).join('')}${pad(`${(med.fjp / med.nodb).toFixed(1)}×`, 10)}${pad(repeats, 6)}`);
  return med;
}

console.log(`node ${process.version}, ${process.platform}/${process.arch}; medians of up to ${REPEATS} interleaved repeats; µs per applied patch`);
console.log('nodb = nodb.js applyPatch (immutable, structural sharing); fjp = fast-json-patch applyPatch(doc, ops, false, false) (immutable by deep clone);');
console.log('clone+mut = structuredClone then mutate; in-place = mutate, not immutable (the floor)');

{
  const state = flatState(100_000);
  header('Flat state {k0: {qty, name}, … k99999} (100,000 keys)');
  for (const [label, ops] of flatCases(100_000)) row(label, state, ops);
}
{
  const state = nestedState(1000, 100);
  header('Nested state {products: {p0: {locations: {l0..l99}, total}, … p999}, total} (1000 × 100)');
  for (const [label, ops] of nestedCases()) row(label, state, ops);
}

// Does the cost follow the patch or the state? One-leaf replace on growing states.
header('Scaling, one-leaf replace, flat state (the root has N keys)');
const flatScale = [];
for (const n of SIZES) {
  const state = flatState(n);
  flatScale.push([n, row(`flat, ${n.toLocaleString('en')} keys`, state, flatCases(n)[0][1])]);
}
header('Scaling, one-leaf replace, nested state (1000 products × M locations; no object wider than 1000)');
const nestedScale = [];
for (const n of SIZES) {
  const m = Math.max(1, Math.round(n / 1000));
  const state = nestedState(1000, m);
  nestedScale.push([1000 * m, row(`nested, 1000 × ${m} = ${(1000 * m).toLocaleString('en')} leaves`, state, [{ op: 'replace', path: '/products/p5/locations/l0', value: -1 }])]);
}
const growth = (xs) => xs.length > 1 ? `${(xs.at(-1)[1].nodb / xs[0][1].nodb).toFixed(1)}× for ${(xs.at(-1)[0] / xs[0][0]).toFixed(0)}× the state` : '';
console.log(`\nnodb one-leaf cost growth: flat ${growth(flatScale)}; nested ${growth(nestedScale)}`);
if (sink === 42) console.log(''); // never: keeps `sink` observable
