import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createReduxStore, nodbMiddleware } from '../nodb.js';

/** A stand-in for a nodb store: records dispatches. */
function stubStore() {
  const listeners = new Set();
  const store = {
    state: { n: 1 },
    sent: [],
    getState: () => store.state,
    subscribe(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    dispatch(type, payload, meta) {
      store.sent.push({ type, payload, meta });
      const p = Promise.resolve(store.sent.length);
      p.applied = p;
      return p;
    },
    change(state) {
      store.state = state;
      for (const l of [...listeners]) l();
    },
  };
  return store;
}

test('createReduxStore: getState, subscribe and dispatch delegate to the nodb store', async () => {
  const nodb = stubStore();
  const redux = createReduxStore(nodb);
  assert.equal(typeof redux.getState, 'function');
  assert.equal(typeof redux.subscribe, 'function');
  assert.equal(typeof redux.dispatch, 'function');
  assert.equal(redux.getState(), nodb.state);
  let calls = 0;
  const unsubscribe = redux.subscribe(() => calls++);
  nodb.change({ n: 2 });
  assert.equal(calls, 1);
  assert.deepEqual(redux.getState(), { n: 2 });
  unsubscribe();
  nodb.change({ n: 3 });
  assert.equal(calls, 1);
  const r = redux.dispatch({ type: 'n/inc', payload: 5, meta: { user: 'ana' } });
  assert.deepEqual(nodb.sent, [{ type: 'n/inc', payload: 5, meta: { user: 'ana' } }]);
  assert.equal(await r, 1, 'dispatch returns the promise of the nodb dispatch');
});

/** A minimal Redux applyMiddleware, to run middleware as Redux does. */
function withMiddleware(middleware) {
  const passed = [];
  const api = { getState: () => ({}), dispatch: (a) => chain(a) };
  const chain = middleware(api)((action) => {
    passed.push(action);
    return action;
  });
  return { dispatch: chain, passed };
}

test('nodbMiddleware routes matching types to the server and passes others on', async () => {
  const nodb = stubStore();
  const { dispatch, passed } = withMiddleware(nodbMiddleware(nodb, { types: ['stock/', 'todo/add'] }));
  const p = dispatch({ type: 'stock/sold', payload: { q: 1 } });
  assert.equal(await p, 1);
  dispatch({ type: 'todo/add', payload: 'x', meta: { m: '1' } });
  const local = { type: 'todo/added-locally' };
  assert.equal(dispatch(local), local);
  dispatch({ type: 'ui/toggle' });
  dispatch({ type: 'stockish' });
  assert.deepEqual(nodb.sent, [
    { type: 'stock/sold', payload: { q: 1 }, meta: undefined },
    { type: 'todo/add', payload: 'x', meta: { m: '1' } },
  ]);
  assert.deepEqual(passed.map((a) => a.type), ['todo/added-locally', 'ui/toggle', 'stockish']);
});

test('nodbMiddleware with a predicate', () => {
  const nodb = stubStore();
  const { dispatch, passed } = withMiddleware(nodbMiddleware(nodb, { match: (type, action) => action.remote === true }));
  dispatch({ type: 'a', remote: true });
  dispatch({ type: 'b' });
  const thunkLike = () => {};
  dispatch(thunkLike); // not an action object: passed on
  assert.deepEqual(nodb.sent.map((a) => a.type), ['a']);
  assert.deepEqual(passed.map((a) => a.type ?? 'fn'), ['b', 'fn']);
});
