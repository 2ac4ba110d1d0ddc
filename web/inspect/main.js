// The history page: wires the actions table (actions.js), the state tree
// and patch (tree.js) and the API (api.js) together. Picking a seq loads
// the chosen view's state at that seq (GET /views/{v}?at=N) and the patch
// that seq made (GET /views/{v}/patch?seq=N); ← and → step one seq; live
// mode polls GET /history from the head once a second.

import { ApiError, explain, getJson, history, stringify } from './api.js';
import { ActionList, clientOf } from './actions.js';
import { renderPatch, renderTree, touchedBy, valueText } from './tree.js';

const $ = (id) => document.getElementById(id);
const LIVE_EVERY_MS = 1000;

const list = new ActionList({ tbody: document.querySelector('#actions tbody'), onHead: showHead });
let view = null;
/** The seq whose detail is shown (null before a pick). */
let current = null;
/** Aborts the detail loads of an earlier pick. */
let loading = null;
let liveTimer = null;
let busy = false;

function showHead(head) {
  $('head').textContent = head.toLocaleString();
  $('head').dataset.seq = String(head);
  updateStepper();
}

function showError(e, retry = null) {
  if (e?.name === 'AbortError') return;
  $('error-text').textContent = explain(e);
  $('error').dataset.status = String(e instanceof ApiError ? e.status : 0);
  $('error').hidden = false;
  $('error-retry').hidden = retry === null;
  $('error-retry').onclick = retry && (() => { clearError(); retry(); });
}

function clearError() {
  $('error').hidden = true;
}

/** Runs a move of the table (one at a time), then updates the controls. */
async function move(what) {
  if (busy) return;
  busy = true;
  document.body.classList.add('loading');
  try {
    await what();
    clearError();
  } catch (e) {
    showError(e, () => move(what));
  } finally {
    busy = false;
    document.body.classList.remove('loading');
    updatePager();
  }
}

function updatePager() {
  const rows = list.rows;
  $('earlier').disabled = !list.earlier;
  $('first').disabled = !list.earlier;
  $('later').disabled = list.next === null;
  $('range').textContent = rows.length === 0 ? 'no actions' : `seq ${rows[0].seq.toLocaleString()} – ${rows.at(-1).seq.toLocaleString()} · ${rows.length} shown`;
  const notes = [];
  if (rows.length === 0 && list.head > 0) notes.push('No action in this range matches the filters.');
  if (list.searched !== null) notes.push(`The search paused at seq ${list.searched.toLocaleString()} (few matches in a long log): Earlier or Later searches on.`);
  $('actions-note').textContent = notes.join(' ');
  if (current !== null) list.select(current);
}

function updateStepper() {
  $('step-back').disabled = current === null || current <= 1;
  $('step-forward').disabled = current === null || current >= list.head;
}

function readFilters() {
  const form = $('filters');
  const num = (name) => {
    const v = form.elements[name].value.trim();
    return v === '' ? null : Math.max(1, Math.floor(Number(v))) || null;
  };
  list.filters = {
    type: form.elements.type.value.trim(),
    client: form.elements.client.value.trim(),
    from: num('from'),
    to: num('to'),
  };
}

/** Shows seq `seq`: the action, the view's patch and state there. */
async function pick(seq) {
  if (!Number.isSafeInteger(seq) || seq < 1 || (list.head > 0 && seq > list.head)) return;
  current = seq;
  $('seq-now').textContent = seq.toLocaleString();
  $('seq-now').dataset.seq = String(seq);
  $('detail-hint').hidden = true;
  updateStepper();
  list.select(seq)?.scrollIntoView({ block: 'nearest' });
  const params = new URLSearchParams(location.hash.slice(1));
  params.set('seq', String(seq));
  if (view) params.set('view', view);
  history_replace(params);
  loading?.abort();
  const controller = new AbortController();
  loading = controller;
  const signal = controller.signal;
  document.body.classList.add('loading-detail');
  try {
    const known = list.at(seq);
    const [action, patch, state] = await Promise.all([
      known ?? history({ from: seq, to: seq, limit: 1 }, { signal }).then((p) => p.actions[0] ?? null),
      view ? getJson(`/views/${encodeURIComponent(view)}/patch?seq=${seq}`, { signal }) : null,
      view ? getJson(`/views/${encodeURIComponent(view)}?at=${seq}`, { signal }) : null,
    ]);
    if (signal.aborted || current !== seq) return;
    showAction(action, seq);
    const ops = patch?.ops ?? [];
    renderPatch($('patch'), ops);
    $('patch').dataset.seq = String(seq);
    $('patch').dataset.view = view ?? '';
    $('patch-count').textContent = patch ? `${ops.length} op${ops.length === 1 ? '' : 's'}` : '';
    if (state) {
      renderTree($('state'), state.state, touchedBy(ops));
      $('state').dataset.seq = String(state.seq);
      $('state').dataset.view = view;
      $('state').dataset.hash = state.hash;
      $('state-seq').textContent = `at seq ${state.seq.toLocaleString()}`;
    }
    clearError();
  } catch (e) {
    if (current === seq) showError(e, () => pick(seq));
  } finally {
    if (loading === controller) document.body.classList.remove('loading-detail');
  }
}

function history_replace(params) {
  window.history.replaceState(null, '', `#${params}`);
}

function showAction(a, seq) {
  const card = $('action');
  card.hidden = false;
  card.dataset.seq = String(seq);
  if (!a) {
    card.replaceChildren(document.createTextNode(`The action at seq ${seq} is not in the log.`));
    return;
  }
  const dl = document.createElement('dl');
  const row = (name, value) => {
    const dt = document.createElement('dt');
    dt.textContent = name;
    const dd = document.createElement('dd');
    dd.append(value);
    dl.append(dt, dd);
    return dd;
  };
  row('type', a.type).classList.add('strong');
  row('id', a.id);
  row('client', a.client ?? clientOf(a.id));
  row('time', new Date(a.ts).toISOString());
  if (a.rejected !== undefined) row('rejected', a.rejected).classList.add('rejected');
  if (a.redacted_by !== undefined) row('redacted', `by seq ${a.redacted_by}`).classList.add('redacted');
  row('payload', valueText(a.payload, 'payload'));
  card.replaceChildren(dl);
}

async function loadViews() {
  const body = await getJson('/views');
  $('app').textContent = body.app ? `${body.app}${body.version ? ` ${body.version}` : ''}` : '';
  // Cascades count their own seqs, not the log's: only the data view's views.
  const names = body.views.filter((v) => !v.cascade).map((v) => v.name);
  const select = $('view');
  select.replaceChildren(...names.map((n) => new Option(n, n)));
  const wanted = new URLSearchParams(location.hash.slice(1)).get('view');
  view = names.includes(wanted) ? wanted : names[0] ?? null;
  if (view) select.value = view;
}

function setLive(on) {
  clearTimeout(liveTimer);
  liveTimer = null;
  document.body.classList.toggle('is-live', on);
  if (!on) return;
  const tick = async () => {
    if (!$('live').checked) return;
    if (!busy) {
      try {
        const wrap = $('table-wrap');
        const atBottom = wrap.scrollTop + wrap.clientHeight >= wrap.scrollHeight - 4;
        const added = await list.poll();
        if (added.length > 0) {
          updatePager();
          if (atBottom) wrap.scrollTop = wrap.scrollHeight;
          for (const a of added) list.tbody.querySelector(`tr[data-seq="${a.seq}"]`)?.classList.add('fresh');
        }
        clearError();
      } catch (e) {
        showError(e);
      }
    }
    liveTimer = setTimeout(tick, LIVE_EVERY_MS);
  };
  move(() => list.loadBefore()).then(() => {
    const wrap = $('table-wrap');
    wrap.scrollTop = wrap.scrollHeight;
    liveTimer = setTimeout(tick, LIVE_EVERY_MS);
  });
}

function wire() {
  $('filters').addEventListener('submit', (e) => {
    e.preventDefault();
    readFilters();
    move(() => (list.filters.from !== null ? list.loadFrom() : list.loadBefore()));
  });
  $('filters').addEventListener('reset', () => {
    setTimeout(() => { readFilters(); move(() => list.loadBefore()); });
  });
  $('first').addEventListener('click', () => move(() => list.loadFrom()));
  $('earlier').addEventListener('click', () => move(() => list.earlierPage()));
  $('later').addEventListener('click', () => move(() => list.later()));
  $('newest').addEventListener('click', () => move(() => list.loadBefore()));
  $('step-back').addEventListener('click', () => pick(current - 1));
  $('step-forward').addEventListener('click', () => pick(current + 1));
  $('live').addEventListener('change', (e) => setLive(e.target.checked));
  $('view').addEventListener('change', (e) => {
    view = e.target.value;
    if (current !== null) pick(current);
  });
  list.tbody.addEventListener('click', (e) => {
    const tr = e.target.closest('tr[data-seq]');
    if (tr) pick(Number(tr.dataset.seq));
  });
  document.addEventListener('keydown', (e) => {
    if (e.target.closest?.('input, select, textarea') || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === 'Enter' && e.target.matches?.('tr[data-seq]')) pick(Number(e.target.dataset.seq));
    if (current === null) return;
    let to = null;
    if (e.key === 'ArrowLeft') to = current - 1;
    else if (e.key === 'ArrowRight') to = current + 1;
    else if (e.key === 'ArrowUp') to = list.neighbours(current).before;
    else if (e.key === 'ArrowDown') to = list.neighbours(current).after;
    if (to !== null) {
      e.preventDefault();
      pick(to);
    }
  });
  window.addEventListener('hashchange', () => {
    // A new link pasted into this tab (a new token): start again with it.
    const now = new URLSearchParams(location.hash.slice(1)).get('token');
    if (now !== (new URLSearchParams(startHash).get('token'))) location.reload();
  });
}

const startHash = location.hash.slice(1);

async function start() {
  wire();
  try {
    await loadViews();
  } catch (e) {
    showError(e, () => location.reload());
    return;
  }
  const seq = Number(new URLSearchParams(startHash).get('seq'));
  await move(() => list.loadBefore());
  if (Number.isSafeInteger(seq) && seq >= 1) pick(seq);
  document.body.dataset.ready = 'true';
}

// For the browser tests and the console: the page's parts.
window.nodbInspect = { list, pick, stringify, get current() { return current; }, get view() { return view; } };
start();
