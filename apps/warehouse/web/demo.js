// The nodb warehouse demo: renders the `stock` and `activity` views live and
// records actions through the `stock` store. No framework; all data goes
// into the page through textContent / attributes, never as HTML.

import { connect } from '/nodb.js';

// With auth on, `nodb up --auth-key` prints a link /#token=<jwt>: the token
// rides in the fragment, which is never sent to a server or logged. Without
// one the page connects without a token (auth off).
const tokenFromHash = () => new URLSearchParams(location.hash.slice(1)).get('token') || null;
const token = tokenFromHash();
const auth = token ? { token } : {};
// A new link pasted into this tab: start again with its token.
window.addEventListener('hashchange', () => { if (tokenFromHash() !== token) location.reload(); });

const stock = connect(location.origin, { view: 'stock', ...auth });
const activity = connect(location.origin, { view: 'activity', readOnly: true, ...auth }); // dispatches go through `stock`
// Cascaded views: derived from the views above by `nodb up`'s cascades.
const marketing = connect(location.origin, { view: 'marketing', readOnly: true, ...auth });
const lowstock = connect(location.origin, { view: 'lowstock', readOnly: true, ...auth });

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'data') for (const [dk, dv] of Object.entries(v)) node.dataset[dk] = dv;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
};
const fmt = new Intl.NumberFormat('en');
const num = (n) => (Number.isFinite(Number(n)) ? fmt.format(Number(n)) : '0');
const byName = (a, b) => a.localeCompare(b, undefined, { numeric: true, sensitivity: 'base' });

// ---------------------------------------------------------------- header --

const STATUSES = ['connecting', 'open', 'offline', 'closed'];

function renderStatus() {
  const node = $('status');
  const s = String(stock.status ?? 'connecting');
  if (node.textContent !== s) node.textContent = s;
  node.dataset.status = s;
  for (const k of STATUSES) node.classList.toggle(`status-${k}`, k === s);
  node.title = s === 'open' ? 'Live: connected to the server'
    : s === 'offline' ? 'Offline: actions are kept and sent on reconnect'
    : s === 'closed' ? 'Closed' : 'Connecting…';
  document.body.dataset.status = s;
}

/** The highest seq this page has seen: kept in data attributes, never shown. */
const pageSeq = () => Math.max(Number(stock.seq) || 0, Number(activity.seq) || 0);

/** "Updated just now": the time of the latest action in the activity view. */
function renderSeq() {
  const node = $('last-change');
  node.dataset.seq = String(pageSeq());
  const recent = activity.getState()?.recent;
  const last = Array.isArray(recent) && recent.length ? recent[recent.length - 1] : null;
  const ts = Number(last?.ts);
  const text = ts > 0 ? relative(ts) || 'just now' : '—';
  if (node.textContent !== text) node.textContent = text;
  node.dataset.ts = ts > 0 ? String(ts) : '';
  node.title = ts > 0 ? `The latest change was recorded ${new Date(ts).toLocaleString()}` : 'No change recorded yet';
}

function renderPending() {
  const n = Number(stock.pending) || 0;
  const node = $('pending');
  if (node.textContent !== String(n)) node.textContent = String(n);
  node.dataset.pending = String(n);
  node.classList.toggle('has-pending', n > 0);
  node.title = n === 1 ? '1 action waiting for the server' : `${n} actions waiting for the server`;
}

function renderHeader() {
  renderStatus();
  renderSeq();
  renderPending();
}

// ---------------------------------------------------------------- replay --

// After a start or a restart the data view replays the log before it is
// live: its /health says `recovering`, with its `seq` and the log's head
// (`chronicler_head`). Meanwhile the page shows how far it is, not an empty
// warehouse with "Nothing has happened yet".

const replay = {
  known: false, // a /health answer came (or there is none to wait for)
  loading: false,
  head: 0, // the log's head while loading
  seq: 0, // the data view's seq at the last answer
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function replayPercent() {
  if (!replay.head) return 0;
  const seq = Math.max(replay.seq, pageSeq());
  return Math.max(0, Math.min(99, Math.floor((100 * seq) / replay.head)));
}

const replayText = () => `Loading history… ${replayPercent()}%`;

/** Asks /health until the data view is caught up; runs once at a time. */
async function followReplay() {
  if (followReplay.running) return;
  followReplay.running = true;
  try {
    for (;;) {
      let health = null;
      try {
        const res = await fetch('/health', { cache: 'no-store', headers: token ? { authorization: `Bearer ${token}` } : {} });
        if (res.ok) health = await res.json();
      } catch { /* the server is away: the status pill says so; asked again on reconnect */ }
      const head = Number(health?.chronicler_head) || 0;
      const seq = Number(health?.seq) || 0;
      const loading = health?.status === 'recovering' && head > seq;
      Object.assign(replay, { head: loading ? head : 0, seq });
      setReplay(loading);
      if (!loading) break;
      await sleep(600);
    }
  } finally {
    followReplay.running = false;
  }
}

function setReplay(loading) {
  const changed = !replay.known || replay.loading !== loading;
  replay.known = true;
  replay.loading = loading;
  if (changed) renderAll(); // the empty states read `replay`
  else renderReplay();
}

/** The banner, and the placeholders that say "Loading history… n%". */
function renderReplay() {
  $('replay').hidden = !replay.loading;
  document.body.dataset.replay = replay.loading ? 'loading' : 'live';
  if (!replay.loading) return;
  const text = replayText();
  $('replay-progress').value = replayPercent();
  if ($('replay-text').textContent !== text) $('replay-text').textContent = text;
  for (const node of document.querySelectorAll('.feed-empty.feed-loading:not([hidden]), .loading-row td')) {
    if (node.textContent !== text) node.textContent = text;
  }
}

/**
 * Shows an empty list's placeholder: its own text (data-empty) once the
 * history is in, "Loading…" until then.
 */
function showEmpty(node, isEmpty, waiting = false) {
  node.hidden = !isEmpty;
  const loading = replay.loading || waiting || !replay.known;
  const text = replay.loading ? replayText() : loading ? 'Loading…' : node.dataset.empty;
  if (node.textContent !== text) node.textContent = text;
  node.classList.toggle('feed-loading', loading);
}

// ----------------------------------------------------------------- stock --

let previous = null; // Map "product\0location" -> qty, for highlighting changes
let selected = null; // {product, location}
let listsKey = '';

function stockState() {
  const s = stock.getState();
  return s && typeof s === 'object' && s.products && typeof s.products === 'object' ? s : null;
}

function renderStock() {
  const state = stockState();
  const table = $('stock-table');
  const wrap = $('stock-wrap');
  const empty = $('empty-state');
  const hint = $('table-hint');
  const card = table.closest('.card');

  // Until the history is in, an empty warehouse may only be not loaded yet:
  // no "The warehouse is empty" (and no sample stock button) before then.
  if (!state || ((replay.loading || !replay.known) && Object.keys(state.products).length === 0)) {
    card.classList.add('loading');
    empty.hidden = true;
    wrap.hidden = false;
    hint.hidden = true;
    const thead = el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'Product' }), el('th', { scope: 'col', class: 'col-total', text: 'Total' })));
    const tbody = el('tbody', {}, el('tr', { class: 'loading-row' }, el('td', { colspan: 2, text: replay.loading ? replayText() : state ? 'Loading…' : 'Waiting for the stock view…' })));
    const tfoot = el('tfoot', {}, el('tr', {}, el('th', { scope: 'row', text: 'Total' }), el('td', { id: 'grand-total', class: 'col-total num', text: '0' })));
    table.replaceChildren(table.caption ?? '', thead, tbody, tfoot);
    return;
  }
  card.classList.remove('loading');

  const products = Object.keys(state.products).sort(byName);
  const locSet = new Set();
  for (const p of products) for (const l of Object.keys(state.products[p]?.locations ?? {})) locSet.add(l);
  const locations = [...locSet].sort(byName);

  $('product-count').textContent = num(products.length);
  $('location-count').textContent = num(locations.length);

  const isEmpty = products.length === 0;
  empty.hidden = !isEmpty;
  wrap.hidden = isEmpty;
  hint.hidden = isEmpty;
  updateLists(products, locations);

  // header
  const headRow = el('tr', {}, el('th', { scope: 'col', class: 'col-product', text: 'Product' }));
  for (const l of locations) headRow.append(el('th', { scope: 'col', class: 'num', data: { location: l }, text: l }));
  headRow.append(el('th', { scope: 'col', class: 'col-total num', text: 'Total' }));

  // body
  const now = new Map();
  const colTotals = new Map(locations.map((l) => [l, 0]));
  const tbody = el('tbody');
  for (const p of products) {
    const entry = state.products[p] ?? {};
    const locs = entry.locations ?? {};
    const row = el('tr', { data: { product: p } });
    const nameBtn = el('button', { type: 'button', class: 'cell-btn product-btn', 'aria-label': `${p}: fill in the forms` , text: p });
    const status = reorderStatus(entry);
    if (status && status !== 'ok') {
      nameBtn.append(el('span', { class: `badge badge-${status}`, data: { reorder: status }, title: `Reorder: ${statusText(status)}`, text: statusText(status) }));
    }
    row.append(el('th', { scope: 'row', class: 'col-product' }, nameBtn));
    let rowSum = 0;
    for (const l of locations) {
      const has = Object.hasOwn(locs, l);
      const q = Number(locs[l]) || 0;
      rowSum += q;
      colTotals.set(l, colTotals.get(l) + q);
      const key = `${p}\u0000${l}`;
      now.set(key, q);
      const td = el('td', { class: 'num qty', data: { location: l, quantity: String(q) } });
      if (!has) td.classList.add('none');
      else if (q === 0) td.classList.add('zero');
      if (previous && (previous.get(key) ?? 0) !== q && (has || previous.has(key))) {
        td.classList.add((previous.get(key) ?? 0) < q ? 'changed-up' : 'changed-down');
      }
      if (selected && selected.product === p && selected.location === l) td.classList.add('selected');
      td.append(el('button', { type: 'button', class: 'cell-btn', 'aria-label': `${num(q)} ${p} at ${l}: fill in the forms`, text: num(q) }));
      row.append(td);
    }
    const total = Number.isFinite(Number(entry.total)) ? Number(entry.total) : rowSum;
    row.append(el('td', { class: 'col-total num', data: { total: String(total) }, text: num(total) }));
    tbody.append(row);
  }

  // footer
  const footRow = el('tr', {}, el('th', { scope: 'row', class: 'col-product', text: 'Total' }));
  for (const l of locations) footRow.append(el('td', { class: 'num', data: { location: l }, text: num(colTotals.get(l)) }));
  const grand = Number.isFinite(Number(state.total)) ? Number(state.total) : [...colTotals.values()].reduce((a, b) => a + b, 0);
  footRow.append(el('td', { id: 'grand-total', class: 'col-total num', data: { total: String(grand) }, text: num(grand) }));

  // Keep keyboard focus on the same cell across the rebuild.
  const active = document.activeElement;
  const focusRow = active && table.contains(active) ? active.closest('tr[data-product]') : null;
  const focusCell = focusRow ? active.closest('td[data-location]') : null;

  table.replaceChildren(table.caption ?? '', el('thead', {}, headRow), tbody, el('tfoot', {}, footRow));
  previous = now;

  if (focusRow) {
    const row = tbody.querySelector(`tr[data-product="${CSS.escape(focusRow.dataset.product)}"]`);
    const target = focusCell
      ? row?.querySelector(`td[data-location="${CSS.escape(focusCell.dataset.location)}"] button`)
      : row?.querySelector('th button');
    target?.focus({ preventScroll: true });
  }
}

function setOptions(list, values) {
  list.replaceChildren(...values.map((v) => el('option', { value: v })));
}

function updateLists(products, locations) {
  const key = JSON.stringify([products, locations]);
  if (key === listsKey) return; // do not disturb an open suggestion list
  listsKey = key;
  setOptions($('products-list'), products);
  setOptions($('locations-list'), locations);
}

// Clicking a cell fills in the forms.
function prefill({ product, location: loc, quantity }) {
  const set = (formId, name, value) => {
    const input = $(formId)?.elements.namedItem(name);
    if (input && value != null) input.value = value;
  };
  for (const f of ['form-correct', 'form-move', 'form-sell', 'form-destroy', 'form-threshold']) set(f, 'product', product);
  if (loc != null) {
    set('form-correct', 'location', loc);
    set('form-sell', 'location', loc);
    set('form-destroy', 'location', loc);
    set('form-move', 'from', loc);
    const to = $('form-move').elements.namedItem('to');
    if (to.value === loc) to.value = '';
    if (quantity != null) set('form-correct', 'quantity', String(quantity));
  }
}

$('stock-table').addEventListener('click', (ev) => {
  const btn = ev.target.closest('button.cell-btn');
  if (!btn) return;
  const row = btn.closest('tr[data-product]');
  if (!row) return;
  const product = row.dataset.product;
  const td = btn.closest('td[data-location]');
  for (const c of $('stock-table').querySelectorAll('.selected')) c.classList.remove('selected');
  if (td) {
    selected = { product, location: td.dataset.location };
    td.classList.add('selected');
    prefill({ product, location: td.dataset.location, quantity: Number(td.dataset.quantity) || 0 });
  } else {
    selected = null;
    prefill({ product });
  }
  flash('Forms filled in', `${product}${td ? ` at ${td.dataset.location}` : ''}`);
});

function flash(title, text) {
  const node = $('table-hint');
  node.textContent = `${title}: ${text}.`;
  node.classList.add('hint-active');
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => {
    node.textContent = 'Tip: click or tap a cell to fill in the forms.';
    node.classList.remove('hint-active');
  }, 2500);
}

// -------------------------------------------------------------- reorders --

/** 'ok' (at or above its threshold), 'pending', 'placed', 'failed', or null (no threshold). */
function reorderStatus(entry) {
  if (!entry || entry.threshold == null) return null;
  const r = entry.reorder;
  return r && typeof r === 'object' ? String(r.status ?? 'pending') : 'ok';
}

/**
 * The one label of each reorder status, wherever the page shows it (the
 * view's values stay in data-status attributes).
 */
const STATUS_TEXT = { ok: 'in stock', pending: 'ordering…', placed: 'ordered', failed: 'failed' };
const statusText = (status) => STATUS_TEXT[status] ?? String(status);

function renderReorders() {
  const state = stockState();
  const wrap = $('reorders-wrap');
  const rows = [];
  const products = state ? Object.keys(state.products).sort(byName) : [];
  for (const p of products) {
    const entry = state.products[p] ?? {};
    const status = reorderStatus(entry);
    if (!status) continue;
    const r = entry.reorder ?? {};
    const detail = status === 'placed' ? `${num(r.quantity)} units · ref ${r.supplier_ref ?? '?'}`
      : status === 'failed' ? String(r.reason ?? 'the supplier refused')
      : status === 'pending' ? `${num(r.quantity)} units`
      : '';
    rows.push(el('tr', { data: { product: p, status } },
      el('th', { scope: 'row', class: 'col-product', text: p }),
      el('td', { class: 'num', data: { total: String(entry.total ?? 0), label: 'Total' }, text: num(entry.total) }),
      el('td', { class: 'num', data: { threshold: String(entry.threshold), label: 'Below' }, text: num(entry.threshold) }),
      el('td', { class: 'num', data: { label: 'Order qty' }, text: num(entry.reorder_quantity) }),
      el('td', { class: 'reorder-cell' },
        el('span', { class: `badge badge-${status}`, data: { status }, text: statusText(status) }),
        detail ? el('div', { class: 'detail', text: detail }) : null),
    ));
  }
  wrap.hidden = rows.length === 0;
  showEmpty($('reorders-empty'), rows.length === 0, !state);
  $('reorder-table').tBodies[0].replaceChildren(...rows);
}

// -------------------------------------------------------------- insights --

/** When each cascade's state last changed (this page's clock). */
const cascadeUpdated = new Map();

/**
 * "Derived from activity · updated just now". The upstream seqs the state
 * was computed from (microsecond seqs, for a cascade upstream) stay in
 * data-sources, for tests and the curious; people get a time.
 */
function renderSources(id, name, store) {
  const node = $(id);
  if (!store.getState()) return;
  if (node.dataset.seq !== String(store.seq)) cascadeUpdated.set(id, Date.now());
  const views = Object.keys(store.sources ?? {}).sort(byName);
  const when = relative(cascadeUpdated.get(id)) || 'just now';
  const key = JSON.stringify([views, when]);
  if (node.dataset.key !== key) {
    const names = views.flatMap((v, i) => [i === 0 ? '' : i === views.length - 1 ? ' and ' : ', ', el('code', { text: v })]);
    node.replaceChildren(...(views.length ? ['Derived from ', ...names, ` · updated ${when}`] : [`Updated ${when}`]));
    node.dataset.key = key;
  }
  node.dataset.seq = String(store.seq);
  node.dataset.sources = JSON.stringify(store.sources ?? {});
  node.title = `The ${name} cascade computes this from ${views.length ? `the ${views.join(' and ')} views' public streams` : 'other views'}, live.`;
}

function renderMarketing() {
  const state = marketing.getState();
  if (!state || typeof state !== 'object') return;
  const fastest = Array.isArray(state.fastest) ? state.fastest : [];
  const rows = fastest.map((f) => el('tr', { data: { product: String(f.product ?? '') } },
    el('th', { scope: 'row', text: String(f.product ?? '') }),
    el('td', { class: 'num', data: { window: 'hour' }, text: num(f.hour) }),
    el('td', { class: 'num', data: { window: 'day' }, text: num(f.day) }),
    el('td', { class: 'num', data: { window: 'week' }, text: num(f.week) })));
  $('movers').tBodies[0].replaceChildren(...rows);
  $('movers').hidden = rows.length === 0;
  showEmpty($('movers-empty'), rows.length === 0);
  renderSources('marketing-sources', 'marketing', marketing);
}

function renderLowstock() {
  const state = lowstock.getState();
  if (!state || typeof state !== 'object') return;
  const products = state.products && typeof state.products === 'object' ? state.products : {};
  const items = Object.keys(products).sort(byName).map((p) => {
    const e = products[p] ?? {};
    const status = e.reorder && typeof e.reorder === 'object' ? String(e.reorder.status ?? 'pending') : null;
    const cover = e.cover_hours == null ? 'no sales this week' : `lasts ~${num(e.cover_hours)} h at this week's pace`;
    return el('li', { data: { product: p, short: String(e.short ?? 0) } },
      el('span', { class: 'low-name', text: p }),
      el('span', { class: 'low-detail', text: `${num(e.total)} of ${num(e.threshold)} · ${num(e.short)} short · ${cover}` }),
      status ? el('span', { class: `badge badge-${status}`, data: { status }, text: statusText(status) }) : null);
  });
  $('lowstock').replaceChildren(...items);
  showEmpty($('lowstock-empty'), items.length === 0);
  renderSources('lowstock-sources', 'lowstock', lowstock);
}

// -------------------------------------------------------------- activity --

const items = new Map(); // seq -> <li>

function kindOf(type) {
  return String(type ?? '').replace(/^stock\//, '').replace('/', '_');
}

function describe(e) {
  const k = kindOf(e.type);
  const b = (text) => el('b', { text: String(text ?? '') });
  const q = b(num(e.quantity));
  const p = b(e.product);
  switch (k) {
    case 'corrected': return ['counted ', q, ' ', p, ' at ', b(e.location)];
    case 'moved': return ['moved ', q, ' ', p, ' from ', b(e.from), ' to ', b(e.to)];
    case 'sold': return ['sold ', q, ' ', p, ' from ', b(e.location)];
    case 'destroyed': {
      const parts = ['destroyed ', q, ' ', p, ' at ', b(e.location)];
      if (e.reason) parts.push(' (', el('span', { class: 'reason', text: String(e.reason) }), ')');
      return parts;
    }
    case 'threshold_set': return Number(e.threshold) > 0
      ? ['reorder ', p, ' below ', b(num(e.threshold))]
      : ['no more reorders of ', p];
    case 'reorder_placed': return ['ordered ', q, ' ', p, ' from the supplier (', el('span', { class: 'reason', text: `ref ${e.supplier_ref ?? '?'}` }), ')'];
    case 'reorder_failed': return ['ordering ', p, ' failed (', el('span', { class: 'reason', text: String(e.reason ?? '') }), ')'];
    default: return [String(e.type ?? 'action')];
  }
}

function relative(ts) {
  const t = Number(ts);
  if (!Number.isFinite(t) || t <= 0) return '';
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ago`;
  const d = Math.floor(h / 24);
  if (d < 7) return d === 1 ? 'yesterday' : `${d} days ago`;
  return new Date(t).toLocaleDateString();
}

function refreshTimes() {
  for (const t of $('activity').querySelectorAll('time[data-ts]')) {
    const text = relative(t.dataset.ts);
    if (t.textContent !== text) t.textContent = text;
  }
  renderSeq();
  renderSources('marketing-sources', 'marketing', marketing);
  renderSources('lowstock-sources', 'lowstock', lowstock);
}

let activityLoaded = false;

function renderActivity() {
  const state = activity.getState();
  if (!state || typeof state !== 'object') return;
  const firstRender = !activityLoaded;
  activityLoaded = true;

  $('sold-units').textContent = num(state.sold_units);
  $('destroyed-units').textContent = num(state.destroyed_units);
  for (const k of ['corrected', 'moved', 'sold', 'destroyed']) $(`count-${k}`).textContent = num(state.counts?.[k]);

  const recent = Array.isArray(state.recent) ? state.recent : [];
  const list = $('activity');
  const keep = new Set();
  const ordered = [];
  for (let i = recent.length - 1; i >= 0; i--) {
    const e = recent[i] ?? {};
    const seq = String(e.seq ?? `i${i}`);
    keep.add(seq);
    let li = items.get(seq);
    if (!li) {
      const k = kindOf(e.type);
      const time = el('time', { class: 'when', data: { ts: String(e.ts ?? '') } });
      if (Number(e.ts) > 0) {
        const d = new Date(Number(e.ts));
        time.setAttribute('datetime', d.toISOString());
        time.title = d.toLocaleString();
      }
      time.textContent = relative(e.ts);
      li = el('li', { class: `entry entry-${k}`, data: { seq, type: k } },
        el('span', { class: `dot dot-${k}`, 'aria-hidden': 'true' }),
        ' ',
        el('span', { class: 'what' }, ...describe(e)),
        ' ',
        el('span', { class: 'meta-line' }, time),
      );
      if (!firstRender) li.classList.add('entry-new');
      items.set(seq, li);
    }
    ordered.push(li);
  }
  for (const [seq, li] of items) if (!keep.has(seq)) { li.remove(); items.delete(seq); }
  // Put the nodes in order, moving only those out of place.
  let cursor = list.firstElementChild;
  for (const li of ordered) {
    if (li === cursor) cursor = cursor.nextElementSibling;
    else list.insertBefore(li, cursor);
  }
  showEmpty($('activity-empty'), ordered.length === 0);
  renderSeq();
}

setInterval(refreshTimes, 10_000);

// --------------------------------------------------------------- notices --

const MAX_NOTICES = 1; // the top bar has room for one; a new notice replaces the old
const recentNotices = new Map(); // text -> time shown, to drop echoes

function notify(kind, title, text, { timeout, dedupeMs = 1500 } = {}) {
  const key = `${kind}\u0000${text}`;
  const last = recentNotices.get(key);
  if (last && Date.now() - last < dedupeMs) return null;
  recentNotices.set(key, Date.now());

  const box = $('notices');
  const urgent = kind === 'rejected' || kind === 'error';
  const node = el('div', { class: `notice notice-${kind}`, role: urgent ? 'alert' : 'status', title: `${title}: ${text ?? ''}` },
    el('div', { class: 'notice-body' },
      el('strong', { class: 'notice-title', text: title }),
      ' ',
      el('span', { class: 'notice-text', text: String(text ?? '') })),
  );
  const close = el('button', { type: 'button', class: 'notice-close', 'aria-label': 'Dismiss', text: '×' });
  close.addEventListener('click', () => dismiss(node));
  node.append(close);
  box.append(node);
  while (box.children.length > MAX_NOTICES) box.firstElementChild.remove();
  const ms = timeout ?? (urgent ? 9000 : 3000);
  if (ms > 0) setTimeout(() => dismiss(node), ms);
  return node;
}

function dismiss(node) {
  if (!node.isConnected || node.classList.contains('leaving')) return;
  node.classList.add('leaving');
  setTimeout(() => node.remove(), 200);
}

const shownRejections = new Set(); // seqs whose rejection is on screen already

function showRejection(reason, seq) {
  if (seq != null) {
    if (shownRejections.has(Number(seq))) return;
    shownRejections.add(Number(seq));
  }
  notify('rejected', 'Rejected', reason || 'The server rejected this action.');
}

function errorText(err) {
  if (!err) return 'Something went wrong.';
  const msg = err.message || String(err);
  return err.code && !msg.includes(err.code) ? `${msg} (${err.code})` : msg;
}

// ------------------------------------------------------------------ forms --

function setMsg(form, text, state) {
  const out = form.querySelector('.form-msg');
  out.textContent = text;
  out.dataset.state = state;
  clearTimeout(out._timer);
  if (state === 'success') out._timer = setTimeout(() => { out.textContent = ''; out.dataset.state = ''; }, 4000);
}

function readPayload(form) {
  const payload = {};
  for (const input of form.querySelectorAll('input[name]')) {
    input.setCustomValidity('');
    const name = input.name;
    if (input.type === 'number') {
      const raw = input.value.trim();
      if (raw === '' && !input.required) continue; // optional: the server's default
      const q = Number(raw);
      const min = Number(input.min) || 0;
      if (raw === '' || !Number.isInteger(q) || q < min) {
        input.setCustomValidity(min > 0 ? 'Enter a whole number of at least 1.' : 'Enter a whole number (0 or more).');
        return null;
      }
      payload[name] = q;
    } else {
      const v = input.value.trim();
      if (!v) { input.setCustomValidity('This field is required.'); return null; }
      payload[name] = v;
    }
  }
  if (form.id === 'form-move' && payload.from === payload.to) {
    form.elements.namedItem('to').setCustomValidity('Choose a different location to move to.');
    return null;
  }
  return payload;
}

function dispatchAction(type, payload, { onAck, onApplied, onRejected, onError } = {}) {
  let p;
  try {
    p = stock.dispatch(type, payload);
  } catch (err) {
    notify('error', 'Could not send', errorText(err));
    onError?.(err);
    return;
  }
  renderPending();
  let ackSeq = null;
  let failed = false;
  const fail = (err) => {
    if (failed) return;
    failed = true;
    notify('error', 'Error', errorText(err));
    onError?.(err);
  };
  Promise.resolve(p).then((seq) => {
    ackSeq = seq;
    renderPending();
    onAck?.(seq);
  }, (err) => {
    renderPending();
    if (err && err.reason != null) return; // reported through .applied
    fail(err);
  });
  const applied = p && p.applied ? p.applied : p;
  Promise.resolve(applied).then((seq) => onApplied?.(seq), (err) => {
    if (err && err.reason != null) {
      showRejection(String(err.reason), err.seq ?? ackSeq);
      onRejected?.(err);
    } else {
      fail(err);
    }
  });
}

function onSubmit(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  const payload = readPayload(form);
  if (!payload) { form.reportValidity(); return; }
  const button = form.querySelector('button[type="submit"]');
  if (button.disabled) return;
  button.disabled = true;
  form.setAttribute('aria-busy', 'true');
  form.classList.add('busy');
  setMsg(form, stock.status === 'open' ? 'Sending…' : 'Queued; sent when back online…', 'sending');
  const done = () => {
    button.disabled = false;
    form.removeAttribute('aria-busy');
    form.classList.remove('busy');
  };
  let settled = false;
  // Offline, the action waits in the outbox (kept across reloads): the form
  // is free at once, so more can be queued.
  if (stock.status !== 'open') done();
  dispatchAction(form.dataset.type, payload, {
    onAck: () => { done(); if (!settled) setMsg(form, 'Recorded…', 'sending'); },
    onApplied: () => { settled = true; done(); setMsg(form, '✓ Done', 'success'); },
    onRejected: (err) => { settled = true; done(); setMsg(form, `Rejected: ${err.reason}`, 'rejected'); },
    onError: (err) => { settled = true; done(); setMsg(form, errorText(err), 'error'); },
  });
}

for (const id of ['form-correct', 'form-move', 'form-sell', 'form-destroy', 'form-threshold']) {
  const form = $(id);
  form.addEventListener('submit', onSubmit);
  form.addEventListener('input', () => {
    for (const i of form.querySelectorAll('input')) i.setCustomValidity('');
    const out = form.querySelector('.form-msg');
    if (out.dataset.state === 'rejected' || out.dataset.state === 'error') setMsg(form, '', '');
  });
}

// ------------------------------------------------------------------- seed --

const SAMPLE = [
  ['apple', 'shelf', 24], ['apple', 'back', 60],
  ['pear', 'shelf', 12], ['pear', 'back', 30],
  ['banana', 'shelf', 18], ['banana', 'back', 45],
];

// Selling 3 pears takes them under their threshold: the envoy reorders.
const SAMPLE_THRESHOLDS = [['pear', 40, 60], ['banana', 20, 50]];

$('seed').addEventListener('click', () => {
  const button = $('seed');
  button.disabled = true;
  const original = button.textContent;
  button.textContent = 'Loading…';
  let left = SAMPLE.length + SAMPLE_THRESHOLDS.length;
  const one = () => {
    if (--left === 0) {
      button.disabled = false;
      button.textContent = original;
    }
  };
  for (const [product, loc, quantity] of SAMPLE) {
    dispatchAction('stock/corrected', { product, location: loc, quantity }, { onApplied: one, onRejected: one, onError: one });
  }
  for (const [product, threshold, quantity] of SAMPLE_THRESHOLDS) {
    dispatchAction('stock/threshold_set', { product, threshold, quantity }, { onApplied: one, onRejected: one, onError: one });
  }
});

// ---------------------------------------------------------------- wiring --

function renderAll() {
  renderStock();
  renderReorders();
  renderActivity();
  renderMarketing();
  renderLowstock();
  renderHeader();
  renderReplay();
}

stock.subscribe(() => { renderStock(); renderReorders(); renderHeader(); });
activity.subscribe(() => { renderActivity(); renderSeq(); });
marketing.subscribe(renderMarketing);
marketing.on('seq', () => renderSources('marketing-sources', 'marketing', marketing));
lowstock.subscribe(renderLowstock);
lowstock.on('seq', () => renderSources('lowstock-sources', 'lowstock', lowstock));
stock.on('status', (s) => { renderHeader(); if (s === 'open') followReplay(); });
stock.on('seq', () => { renderSeq(); if (replay.loading) renderReplay(); });
activity.on('seq', renderSeq);
stock.on('ack', renderPending);
stock.on('rejected', ({ seq, reason } = {}) => { showRejection(reason, seq); renderPending(); });
// Errors the client library recovers from by itself (resyncing, resending,
// reconnecting) are not worth a notice; the status pill tells the story.
const QUIET = new Set(['gap', 'patch_failed', 'connect', 'out_of_order', 'locks']);
const EXPIRED = 'The access token in this page\'s link has expired: open the page with a new #token= link. Actions are kept until then.';
function onStoreError(title) {
  return (err = {}) => {
    if (QUIET.has(err.code)) { console.warn(`nodb ${title}:`, err.code, err.message); return; }
    if (err.code === 'unauthorized') { notify('error', 'Access expired', EXPIRED, { timeout: 0, dedupeMs: 60_000 }); return; }
    // An error about one of our actions also fails its promise, which reports
    // it; notify() drops identical messages shown within a moment.
    notify('error', title, errorText(err), { dedupeMs: 10_000 });
  };
}
stock.on('error', onStoreError('Server error'));
activity.on('error', onStoreError('Activity view'));
// A cascade that is not there (an app without cascades) is not worth a notice.
marketing.on('error', (err = {}) => console.warn('nodb marketing:', err.code, err.message));
lowstock.on('error', (err = {}) => console.warn('nodb lowstock:', err.code, err.message));

renderAll();
followReplay();
// The outbox can change without a state change (e.g. while offline).
setInterval(renderPending, 1000);
