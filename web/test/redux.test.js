// The Redux adapters (issue 19): createReduxStore is a Redux Store (its
// dispatch returns the action, thunks fail at once, replaceReducer and
// Symbol.observable, no unhandled rejection); nodbMiddleware with and
// without options, leaving RTK's lifecycle actions alone and explaining
// what it refuses; createNodbSlice keeping a Redux Toolkit slice equal to a
// view. Real Redux Toolkit over a live store on the fake WebSocket.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configureStore, createAsyncThunk, createSlice } from '@reduxjs/toolkit';
import { applyMiddleware, legacy_createStore as createReduxCore } from 'redux';
import { connect, createNodbSlice, createReduxStore, dispatched, nodbMiddleware } from '../nodb.js';
import { fakeServer, fast, memoryStorage, sleep } from './fakes.js';

/** A live nodb store on the fake server, opened, with a first snapshot. */
function live(state = { products: { pear: { total: 1 }, fig: { total: 2 } }, total: 3 }) {
  const server = fakeServer();
  const store = connect('http://h', { view: 'stock', clientId: 'c', storage: memoryStorage(), WebSocket: server.WS, backoff: fast, locks: null });
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 1, state });
  const sent = () => server.last.sent.filter((m) => m.type === 'dispatch').map((m) => m.action);
  return { server, store, sent };
}

/** Runs `fn`, failing if a promise rejection goes unhandled meanwhile. */
async function noUnhandled(fn) {
  const unhandled = [];
  const on = (e) => unhandled.push(e);
  process.on('unhandledRejection', on);
  try {
    await fn();
    await sleep(20);
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off('unhandledRejection', on);
  }
  assert.deepEqual(unhandled, [], 'no unhandled rejection');
}

test('createReduxStore is a Redux Store: dispatch returns the action, its promises through dispatched()/dispatchAsync', () => noUnhandled(async () => {
  const { server, store, sent } = live();
  const redux = createReduxStore(store);
  assert.equal(redux.getState(), store.getState());
  let calls = 0;
  const unsubscribe = redux.subscribe(() => calls++);
  const action = { type: 'stock/sold', payload: { product: 'pear', quantity: 1 } };
  assert.equal(redux.dispatch(action), action);
  assert.deepEqual(sent(), [{ id: 'c:1', type: 'stock/sold', payload: { product: 'pear', quantity: 1 } }]);
  const p = dispatched(action);
  assert.ok(p && p.applied, 'the promises of the action');
  const q = redux.dispatchAsync({ type: 'stock/sold', payload: { product: 'fig', quantity: 1 } });
  server.last.deliver(
    { type: 'ack', id: 'c:1', seq: 2 },
    { type: 'ack', id: 'c:2', seq: 3 },
    { type: 'patch', from: 2, seq: 3, ops: [{ op: 'replace', path: '/total', value: 1 }] },
  );
  assert.equal(await p.applied, 2);
  assert.equal(await q.applied, 3);
  assert.equal(calls, 1);
  unsubscribe();
  assert.equal(dispatched({ type: 'never/sent' }), undefined);
  store.close();
}));

test('createReduxStore refuses thunks and non-actions at once, and says why', () => {
  const { store, sent } = live();
  const redux = createReduxStore(store);
  assert.throws(() => redux.dispatch(() => {}), (e) => e instanceof TypeError && /thunk/.test(e.message) && /nodbMiddleware/.test(e.message));
  assert.throws(() => redux.dispatch(null), /plain objects/);
  assert.throws(() => redux.dispatch({ payload: 1 }), /non-empty string type/);
  assert.throws(() => redux.dispatch({ type: 'a', payload: { when: new Date(0) } }), (e) => e.code === 'invalid_action' && /Date/.test(e.message));
  assert.throws(() => redux.dispatch({ type: 'a', meta: { requestId: 'x', arg: 1 } }), /meta of a must be an object of strings/);
  assert.throws(() => redux.replaceReducer((s) => s), /server's reducers/);
  assert.deepEqual(sent(), [], 'nothing was sent');
  store.close();
});

test('createReduxStore works with Redux itself: observable, and as the store of Redux helpers', async () => {
  const { server, store } = live({ n: 1 });
  const redux = createReduxStore(store);
  const key = Symbol.observable ?? '@@observable';
  const obs = redux[key]();
  assert.equal(obs[key](), obs);
  const seen = [];
  const sub = obs.subscribe({ next: (s) => seen.push(s.n) });
  server.last.deliver({ type: 'patch', seq: 2, ops: [{ op: 'replace', path: '/n', value: 2 }] });
  sub.unsubscribe();
  server.last.deliver({ type: 'patch', seq: 3, ops: [{ op: 'replace', path: '/n', value: 3 }] });
  assert.deepEqual(seen, [1, 2]);
  // Redux's own store has the same members.
  const core = createReduxCore((s = 0) => s);
  const members = (o) => [...Object.keys(o), ...Object.getOwnPropertySymbols(o).map(String)].sort();
  assert.deepEqual(members(redux).filter((k) => k !== 'dispatchAsync'), members(core));
  store.close();
});

test('a failed dispatch is reported once to onError, never as an unhandled rejection', () => noUnhandled(async () => {
  const { server, store } = live();
  const errors = [];
  const redux = createReduxStore(store, { onError: (e, a) => errors.push([e.code, a.type]) });
  redux.dispatch({ type: 'stock/sold', payload: { quantity: 500 } });
  redux.dispatch({ type: 'admin/wipe' });
  server.last.deliver(
    { type: 'ack', id: 'c:1', seq: 2 },
    { type: 'rejected', id: 'c:1', seq: 2, reason: 'not enough stock' },
    { type: 'patch', seq: 2, ops: [] },
    { type: 'error', id: 'c:2', code: 'forbidden', message: 'no', right: 'dispatch:admin/' },
  );
  await sleep(5);
  assert.deepEqual(errors, [['rejected', 'stock/sold'], ['forbidden', 'admin/wipe']]);
  // Without onError, the store's events report it, and nothing is unhandled.
  const quiet = createReduxStore(store);
  const rejected = [];
  store.on('rejected', (r) => rejected.push(r.reason));
  quiet.dispatch({ type: 'stock/sold', payload: { quantity: 600 } });
  await sleep(5);
  server.last.deliver({ type: 'ack', id: 'c:2', seq: 3 }, { type: 'rejected', id: 'c:2', seq: 3, reason: 'no' }, { type: 'patch', seq: 3, ops: [] });
  assert.deepEqual(rejected, ['no']);
  store.close(); // rejects what is pending: handled too
  quiet.dispatch({ type: 'after/close' });
}));

/** A Redux Toolkit store over `store`: a nodb slice, a local slice, a thunk, the middleware. */
function rtkApp(store, middlewareOptions) {
  const stock = createNodbSlice(store, { name: 'stock' });
  const ui = createSlice({
    name: 'ui',
    initialState: { loads: [], filter: '' },
    reducers: { filtered: (s, a) => { s.filter = a.payload; } },
    extraReducers: (b) => {
      b.addCase(load.pending, (s) => { s.loads.push('pending'); });
      b.addCase(load.fulfilled, (s, a) => { s.loads.push(`fulfilled ${a.payload}`); });
      b.addCase(load.rejected, (s, a) => { s.loads.push(`rejected ${a.error.message}`); });
    },
  });
  const load = createAsyncThunk('stock/load', async (n) => {
    if (n < 0) throw new Error('negative');
    return n * 2;
  });
  /** Every action the Redux store's middleware chain saw. */
  const seen = [];
  const app = configureStore({
    reducer: { stock: stock.reducer, ui: ui.reducer },
    middleware: (gDM) => gDM().concat(stock.middleware, nodbMiddleware(store, middlewareOptions), () => (next) => (a) => { seen.push(a); return next(a); }),
  });
  return { app, stock, ui, load, seen };
}

test("nodbMiddleware sends matching actions, returns them, and leaves createAsyncThunk's lifecycle actions alone", () => noUnhandled(async () => {
  const { store, sent } = live();
  const { app, ui, load } = rtkApp(store, { types: ['stock/'] });
  const action = { type: 'stock/sold', payload: { product: 'pear', quantity: 1 } };
  assert.equal(app.dispatch(action), action, 'the middleware returns the action');
  assert.ok(dispatched(action), 'and keeps its promises');
  app.dispatch(ui.actions.filtered('pe'));
  assert.equal(await app.dispatch(load(2)).unwrap(), 4);
  await app.dispatch(load(-1));
  assert.deepEqual(app.getState().ui.loads, ['pending', 'fulfilled 4', 'pending', 'rejected negative']);
  assert.equal(app.getState().ui.filter, 'pe');
  assert.deepEqual(sent().map((a) => a.type), ['stock/sold'], 'only the plain stock/ action went to the server');
  store.close();
}));

test('nodbMiddleware without options sends every plain action but Redux\'s own, lifecycle and slice actions', () => noUnhandled(async () => {
  const { server, store, sent } = live();
  const { app, ui, load } = rtkApp(store);
  app.dispatch(ui.actions.filtered('x'));
  await app.dispatch(load(1));
  server.last.deliver({ type: 'patch', seq: 2, ops: [{ op: 'replace', path: '/total', value: 9 }] });
  assert.deepEqual(sent().map((a) => a.type), ['ui/filtered']);
  assert.equal(app.getState().ui.filter, '', 'a sent action does not reach the local reducers');
  assert.equal(app.getState().stock.total, 9);
  store.close();
}));

test('nodbMiddleware explains what it refuses, at once', () => {
  const { store, sent } = live();
  const { app } = rtkApp(store, { types: ['stock/'] });
  assert.throws(() => app.dispatch({ type: 'stock/tagged', payload: 1, meta: { at: 5 } }),
    (e) => e instanceof TypeError && /nodbMiddleware: cannot send stock\/tagged/.test(e.message) && /meta/.test(e.message));
  assert.throws(() => app.dispatch({ type: 'stock/sold', payload: { n: 10n } }), /payload of stock\/sold is not JSON: .*bigint/);
  assert.deepEqual(sent(), []);
  assert.throws(() => nodbMiddleware(store, { types: ['a'], match: () => true }), /not both/);
  store.close();
});

test('nodbMiddleware takes a list, a predicate, or options with onError', () => {
  const { store, sent } = live();
  const run = (options, actions) => {
    const app = createReduxCore((s = 0) => s, applyMiddleware(nodbMiddleware(store, options)));
    for (const a of actions) app.dispatch(a);
  };
  run(['stock/sold'], [{ type: 'stock/sold' }, { type: 'stock/soldout' }]);
  run((type, a) => a.remote === true, [{ type: 'a', remote: true }, { type: 'b' }]);
  run({ match: (t) => t === 'c', onError: () => {} }, [{ type: 'c' }, { type: 'd' }]);
  assert.deepEqual(sent().map((a) => a.type), ['stock/sold', 'a', 'c']);
  store.close();
});

test('createNodbSlice keeps a Redux Toolkit slice equal to the view, the very objects', () => {
  const { server, store } = live();
  const { app, stock, seen } = rtkApp(store, { types: ['stock/'] });
  assert.equal(app.getState().stock, store.getState(), 'the initial state is the view');
  const before = app.getState().stock;
  server.last.deliver({ type: 'patch', seq: 2, ops: [{ op: 'replace', path: '/products/pear/total', value: 5 }] });
  assert.equal(app.getState().stock, store.getState());
  assert.equal(app.getState().stock.products.pear.total, 5);
  assert.equal(app.getState().stock.products.fig, before.products.fig, 'untouched subtrees keep their identity');
  assert.equal(stock.selectState(app.getState()), store.getState());
  assert.equal(stock.synced.type, 'nodb/stock/synced');
  assert.ok(stock.synced.match(stock.synced(null)));
  // The synced action carries the seq (what the Redux store's DevTools show).
  assert.deepEqual(seen.filter((a) => stock.synced.match(a)).map((a) => [a.payload, a.meta]), [[store.getState(), { seq: 2 }]]);
  assert.deepEqual(stock.synced(null, 7).meta, { seq: 7 });
  // A resync that changes nothing dispatches nothing.
  let notified = 0;
  app.subscribe(() => notified++);
  server.last.deliver({ type: 'snapshot', seq: 3, state: { products: { pear: { total: 5 }, fig: { total: 2 } }, total: 3 } });
  assert.equal(notified, 0);
  assert.equal(app.getState().stock, store.getState());
  store.close();
});
