// Redux DevTools (nodb/devtools.js) over the fake socket, a recording fake of
// the extension's `__REDUX_DEVTOOLS_EXTENSION__.connect()` interface and a
// fake fetch answering `GET /history`: nothing without the extension; `init`
// with the first snapshot, one `send` per update with its seq and the state
// after it; the type from this client's acks, else from `/history` (batched,
// one request at a time, at most one per HISTORY_INTERVAL_MS, with the
// token), else `@@nodb/update` (refused, failing, a cascade, `actions:
// false`), never asked again after a refusal; `@@nodb/snapshot` for a
// resync; maxAge; the tool's time travel refused; close.

import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { connect, connectDevtools } from '../nodb.js';
import { HISTORY_INTERVAL_MS, LISTED } from '../nodb/devtools.js';
import { fakeDevtools, fakeFetch, fakeServer, fast, historyAnswer, jwt, memoryStorage, sleep, waitFor } from './fakes.js';

afterEach(() => { delete globalThis.__REDUX_DEVTOOLS_EXTENSION__; });

/** A store of view `stock` with devtools `options`, its socket open. */
function setup(devtools = {}, connectOptions = {}) {
  const server = fakeServer();
  const store = connect('http://nodb.test:7400/', {
    view: 'stock', clientId: 'c', storage: memoryStorage(), WebSocket: server.WS, backoff: fast, devtools, ...connectOptions,
  });
  server.last.open();
  return { server, store };
}

/** The send calls as [action, state] pairs. */
const sends = (instance) => instance.sends.map(([, action, state]) => [action, state]);

test('without the extension nothing happens and nothing is fetched', async () => {
  const { fetch, requests } = fakeFetch(() => ({ status: 200, body: { actions: [] } }));
  const { server, store } = setup({ fetch });
  server.last.deliver({ type: 'snapshot', seq: 1, state: { n: 0 } });
  server.last.deliver({ type: 'patch', seq: 2, ops: [{ op: 'replace', path: '/n', value: 1 }] });
  await sleep(HISTORY_INTERVAL_MS);
  assert.equal(requests.length, 0);
  assert.equal(connectDevtools(store, { url: 'http://nodb.test:7400', fetch }), null);
  store.close();
});

test('init with the first snapshot, one send per update: own actions, the log\'s, a coalesced patch, a resync', async () => {
  const tools = fakeDevtools();
  const log = new Map([
    [11, { id: 'bob:1', client: 'bob', type: 'stock/corrected', ts: 1000, payload: { product: 'pear', quantity: 9 } }],
    [13, { id: 'bob:2', client: 'bob', type: 'stock/sold', ts: 1001, payload: { product: 'pear', quantity: 1 } }],
    [14, { id: 'bob:3', client: 'bob', type: 'stock/sold', ts: 1002, payload: { product: 'pear', quantity: 2 } }],
    [15, { id: 'ann:1', client: 'ann', type: 'stock/moved', ts: 1003, payload: null, rejected: 'not enough' }],
  ]);
  const token = jwt({ sub: 'c', log: true });
  const { fetch, requests } = fakeFetch((url) => historyAnswer(log, url));
  const { server, store } = setup({ fetch, maxAge: 30 }, { token });
  const dt = tools.last;
  assert.equal(dt.options.name, 'nodb stock');
  assert.equal(dt.options.maxAge, 30);
  assert.equal(dt.options.features.jump, false, 'no time travel offered');
  assert.deepEqual(dt.calls, [], 'nothing before the first snapshot');

  server.last.deliver({ type: 'snapshot', seq: 10, state: { pear: 0, apple: { n: 1 } } });
  assert.deepEqual(dt.calls, [['init', { pear: 0, apple: { n: 1 } }]]);

  // Seq 11 is someone else's, 12 this client's (its ack after the patch).
  const sent = store.dispatch('stock/sold', { product: 'pear', quantity: 3 });
  server.last.deliver({ type: 'patch', seq: 11, ops: [{ op: 'replace', path: '/pear', value: 9 }] });
  const at11 = store.getState();
  server.last.deliver({ type: 'patch', seq: 12, ops: [{ op: 'replace', path: '/pear', value: 6 }] });
  const at12 = store.getState();
  server.last.deliver({ type: 'ack', id: 'c:1', seq: 12, duplicate: false });
  await sent;
  // One patch for seqs 13..=15.
  server.last.deliver({ type: 'patch', from: 13, seq: 15, ops: [{ op: 'replace', path: '/pear', value: 3 }] });
  const at15 = store.getState();
  // A resync: a snapshot that replaces the state.
  server.last.deliver({ type: 'snapshot', seq: 16, version: 'warehouse 0.2.0', state: { pear: 3, apple: { n: 2 } } });
  const at16 = store.getState();

  await waitFor(() => dt.sends.length === 4, 'four sends');
  assert.deepEqual(sends(dt), [
    [{ seq: 11, id: 'bob:1', client: 'bob', type: 'stock/corrected', ts: 1000, payload: { product: 'pear', quantity: 9 } }, at11],
    [{ seq: 12, id: 'c:1', type: 'stock/sold', payload: { product: 'pear', quantity: 3 } }, at12],
    [{
      type: 'stock/sold ×2, stock/moved',
      seq: 15,
      from: 13,
      actions: [
        { seq: 13, id: 'bob:2', client: 'bob', type: 'stock/sold', ts: 1001, payload: { product: 'pear', quantity: 1 } },
        { seq: 14, id: 'bob:3', client: 'bob', type: 'stock/sold', ts: 1002, payload: { product: 'pear', quantity: 2 } },
        { seq: 15, id: 'ann:1', client: 'ann', type: 'stock/moved', ts: 1003, payload: null, rejected: 'not enough' },
      ],
    }, at15],
    [{ type: '@@nodb/snapshot', seq: 16, version: 'warehouse 0.2.0' }, at16],
  ]);
  // One request for the burst, with the token; seq 12 was asked too (one range), its ack won.
  assert.equal(requests.length, 1);
  assert.equal(requests[0].url.pathname, '/history');
  assert.deepEqual(Object.fromEntries(requests[0].url.searchParams), { from: '11', to: '15', limit: '5' });
  assert.equal(requests[0].headers.authorization, `Bearer ${token}`);
  store.close();
  assert.deepEqual(dt.calls.at(-1), ['unsubscribe']);
});

test('/history refused (403): every update falls back to @@nodb/update, own actions keep their type, and it is not asked again', async () => {
  const tools = fakeDevtools();
  const { fetch, requests } = fakeFetch(() => ({ status: 403, body: { error: { code: 'forbidden', message: 'no', right: 'log' } } }));
  const { server, store } = setup({ fetch });
  const dt = tools.last;
  server.last.deliver({ type: 'snapshot', seq: 1, state: { n: 0 } });
  server.last.deliver({ type: 'patch', seq: 2, ops: [{ op: 'replace', path: '/n', value: 1 }] });
  await waitFor(() => dt.sends.length === 1, 'the first send');
  assert.deepEqual(sends(dt), [[{ type: '@@nodb/update', seq: 2 }, { n: 1 }]]);

  const sent = store.dispatch('n/add', { by: 2 });
  server.last.deliver({ type: 'ack', id: 'c:1', seq: 3, duplicate: false });
  await sent;
  server.last.deliver({ type: 'patch', seq: 3, ops: [{ op: 'replace', path: '/n', value: 3 }] });
  server.last.deliver({ type: 'patch', from: 4, seq: 6, ops: [{ op: 'replace', path: '/n', value: 4 }] });
  server.last.deliver({ type: 'patch', seq: 7, ops: [] });
  await waitFor(() => dt.sends.length === 4, 'four sends');
  assert.deepEqual(sends(dt).slice(1), [
    [{ seq: 3, id: 'c:1', type: 'n/add', payload: { by: 2 } }, { n: 3 }],
    [{ type: '@@nodb/update', seq: 6, from: 4 }, { n: 4 }],
    [{ type: '@@nodb/update', seq: 7 }, { n: 4 }],
  ]);
  await sleep(HISTORY_INTERVAL_MS + 100);
  assert.equal(requests.length, 1, 'refused once, never asked again');
  store.close();
});

test('a 404 (no /history) and a failing one fall back too; a failure pauses it', async () => {
  for (const answer of [() => ({ status: 404, body: null }), () => { throw new TypeError('fetch failed'); }, () => ({ status: 500, body: null })]) {
    const tools = fakeDevtools();
    const { fetch, requests } = fakeFetch(answer);
    const { server, store } = setup({ fetch });
    const dt = tools.last;
    server.last.deliver({ type: 'snapshot', seq: 1, state: { n: 0 } });
    server.last.deliver({ type: 'patch', seq: 2, ops: [{ op: 'replace', path: '/n', value: 1 }] });
    await waitFor(() => dt.sends.length === 1, 'the first send');
    await sleep(HISTORY_INTERVAL_MS + 50);
    server.last.deliver({ type: 'patch', seq: 3, ops: [{ op: 'replace', path: '/n', value: 2 }] });
    await waitFor(() => dt.sends.length === 2, 'the second send');
    assert.deepEqual(sends(dt).map(([a]) => a), [{ type: '@@nodb/update', seq: 2 }, { type: '@@nodb/update', seq: 3 }]);
    assert.equal(requests.length, 1);
    store.close();
  }
});

test('a refused token (401) is not asked again; a new token is', async () => {
  const tools = fakeDevtools();
  let token = 'old';
  const { fetch, requests } = fakeFetch((url, r) => (r.headers.authorization === 'Bearer new' ? historyAnswer(new Map([[3, { type: 't/three' }]]), url) : { status: 401 }));
  const server2 = fakeServer();
  const live = connect('http://nodb.test:7400/', { view: 'stock', clientId: 'd', storage: memoryStorage(), WebSocket: server2.WS, backoff: fast });
  server2.last.open();
  server2.last.deliver({ type: 'snapshot', seq: 1, state: { n: 0 } });
  const devtools = connectDevtools(live, { url: 'http://nodb.test:7400/base/', token: () => token, fetch });
  const dt = tools.last;
  assert.equal(dt.options.name, 'nodb');
  assert.deepEqual(dt.calls, [['init', { n: 0 }]], 'a store with a state is shown at once');
  server2.last.deliver({ type: 'patch', seq: 2, ops: [] });
  await waitFor(() => dt.sends.length === 1, 'the first send');
  assert.equal(requests[0].url.pathname, '/base/history');
  assert.equal(dt.sends[0][1].type, '@@nodb/update');
  token = 'new';
  server2.last.deliver({ type: 'patch', seq: 3, ops: [] });
  await waitFor(() => dt.sends.length === 2, 'the second send');
  assert.equal(requests.length, 2);
  assert.deepEqual(dt.sends[1][1], { seq: 3, type: 't/three' });
  devtools.close();
  assert.deepEqual(dt.calls.at(-1), ['unsubscribe']);
  live.close();
});

test('/history is asked one request at a time, at most one per interval, a long patch listing a few', async () => {
  const tools = fakeDevtools();
  const log = new Map(Array.from({ length: 100 }, (_, i) => [i + 1, { type: `t/${i + 1}` }]));
  /** @type {Array<() => void>} */
  const held = [];
  const { fetch, requests } = fakeFetch(async (url) => {
    await new Promise((r) => held.push(r));
    return historyAnswer(log, url);
  });
  const { server, store } = setup({ fetch });
  const dt = tools.last;
  server.last.deliver({ type: 'snapshot', seq: 1, state: { n: 0 } });
  server.last.deliver({ type: 'patch', seq: 2, ops: [] });
  await waitFor(() => requests.length === 1, 'the first request');
  // While it is on its way, more updates: no second request.
  server.last.deliver({ type: 'patch', seq: 3, ops: [] });
  server.last.deliver({ type: 'patch', from: 4, seq: 60, ops: [] });
  await sleep(200);
  assert.equal(requests.length, 1, 'one request at a time');
  held.shift()();
  await waitFor(() => dt.sends.length === 1, 'seq 2 sent');
  await waitFor(() => requests.length === 2, 'the second request');
  assert.ok(requests[1].at - requests[0].at >= HISTORY_INTERVAL_MS - 5, `${requests[1].at - requests[0].at} ms apart`);
  // Seq 3, and the first LISTED seqs of 4..=60.
  assert.deepEqual(Object.fromEntries(requests[1].url.searchParams), { from: '3', to: String(3 + LISTED), limit: String(LISTED + 1) });
  held.shift()();
  await waitFor(() => dt.sends.length === 3, 'all sent');
  const long = dt.sends[2][1];
  assert.equal(long.from, 4);
  assert.equal(long.seq, 60);
  assert.equal(long.actions.length, LISTED);
  assert.equal(long.more, 57 - LISTED);
  assert.match(long.type, /^t\/4, t\/5, .*, …$/);
  store.close();
});

test('maxAge: no more than maxAge updates wait, the older are not sent', async () => {
  const tools = fakeDevtools();
  const { server, store } = setup({ maxAge: 3, actions: false });
  const dt = tools.last;
  server.last.deliver({ type: 'snapshot', seq: 1, state: { n: 0 } });
  for (let seq = 2; seq <= 10; seq++) server.last.deliver({ type: 'patch', seq, ops: [{ op: 'replace', path: '/n', value: seq }] });
  await waitFor(() => dt.sends.length === 3, 'three sends');
  await sleep(150);
  assert.deepEqual(sends(dt), [8, 9, 10].map((seq) => [{ type: '@@nodb/update', seq }, { n: seq }]));
  store.close();
});

test('a cascade\'s updates are @@nodb/update with sources; actions: false never fetches', async () => {
  const tools = fakeDevtools();
  const { fetch, requests } = fakeFetch(() => ({ status: 200, body: { actions: [] } }));
  const { server, store } = setup({ fetch });
  const dt = tools.last;
  server.last.deliver({ type: 'snapshot', seq: 1000, sources: { stock: 5 }, state: { low: [] } });
  server.last.deliver({ type: 'patch', seq: 1001, sources: { stock: 7 }, ops: [{ op: 'add', path: '/low/-', value: 'pear' }] });
  await waitFor(() => dt.sends.length === 1, 'the send');
  assert.deepEqual(sends(dt), [[{ type: '@@nodb/update', seq: 1001, sources: { stock: 7 } }, { low: ['pear'] }]]);
  store.close();

  const tools2 = fakeDevtools();
  const two = setup({ fetch, actions: false });
  two.server.last.deliver({ type: 'snapshot', seq: 1, state: { n: 0 } });
  two.server.last.deliver({ type: 'patch', seq: 2, ops: [] });
  await waitFor(() => tools2.last.sends.length === 1, 'the send');
  assert.equal(requests.length, 0);
  two.store.close();
});

test('the tool cannot change the state: time travel is answered with an error; COMMIT and pause are the tool\'s own', async () => {
  const tools = fakeDevtools();
  const { server, store } = setup({ actions: false });
  const dt = tools.last;
  server.last.deliver({ type: 'snapshot', seq: 1, state: { n: 0 } });
  server.last.deliver({ type: 'patch', seq: 2, ops: [{ op: 'replace', path: '/n', value: 1 }] });
  await waitFor(() => dt.sends.length === 1, 'the send');
  const state = store.getState();
  let changes = 0;
  store.subscribe(() => changes++);
  for (const type of ['JUMP_TO_STATE', 'JUMP_TO_ACTION', 'TOGGLE_ACTION', 'ROLLBACK', 'RESET', 'IMPORT_STATE']) {
    dt.tell({ type: 'DISPATCH', payload: { type, index: 0, actionId: 0 }, state: '{"n":0}' });
  }
  dt.tell({ type: 'ACTION', payload: '{"type":"n/set"}' });
  assert.equal(store.getState(), state);
  assert.equal(changes, 0);
  assert.equal(server.last.sent.length, 0, 'nothing dispatched to the server');
  const errors = dt.calls.filter((c) => c[0] === 'error');
  assert.equal(errors.length, 7);
  assert.match(errors[0][1], /JUMP_TO_STATE cannot change this store\. Its state is the server's \(at seq 2\)/);

  dt.tell({ type: 'DISPATCH', payload: { type: 'COMMIT' } });
  assert.deepEqual(dt.calls.at(-1), ['init', { n: 1 }], 'COMMIT: the last state sent becomes the tool\'s initial state');
  dt.tell({ type: 'DISPATCH', payload: { type: 'PAUSE_RECORDING', status: true } });
  server.last.deliver({ type: 'patch', seq: 3, ops: [{ op: 'replace', path: '/n', value: 2 }] });
  await sleep(200);
  assert.equal(dt.sends.length, 1, 'paused: not sent');
  dt.tell({ type: 'DISPATCH', payload: { type: 'PAUSE_RECORDING', status: false } });
  server.last.deliver({ type: 'patch', seq: 4, ops: [{ op: 'replace', path: '/n', value: 3 }] });
  await waitFor(() => dt.sends.length === 2, 'sent again');
  assert.deepEqual(dt.sends[1].slice(1), [{ type: '@@nodb/update', seq: 4 }, { n: 3 }]);

  store.close();
  const before = dt.calls.length;
  dt.tell({ type: 'DISPATCH', payload: { type: 'JUMP_TO_STATE' } });
  assert.equal(dt.calls.length, before, 'nothing after close');
});

test('an ack that comes late is waited for when /history cannot help; a rejection names the action at once', async () => {
  const tools = fakeDevtools();
  const { server, store } = setup({ actions: false });
  const dt = tools.last;
  server.last.deliver({ type: 'snapshot', seq: 1, state: { n: 0 } });
  const sent = store.dispatch('n/inc');
  server.last.deliver({ type: 'patch', seq: 2, ops: [{ op: 'replace', path: '/n', value: 1 }] });
  await sleep(300);
  assert.equal(dt.sends.length, 0, 'waiting for the ack');
  server.last.deliver({ type: 'ack', id: 'c:1', seq: 2, duplicate: false });
  await sent;
  await waitFor(() => dt.sends.length === 1, 'the send');
  assert.deepEqual(dt.sends[0][1], { seq: 2, id: 'c:1', type: 'n/inc', payload: null });

  // The rejection comes before the patch and the ack, and says which action it was.
  const refused = store.dispatch('n/inc', { by: 5 });
  refused.applied.catch(() => {});
  server.last.deliver({ type: 'rejected', seq: 3, id: 'c:2', reason: 'too many' });
  server.last.deliver({ type: 'patch', seq: 3, ops: [] });
  await waitFor(() => dt.sends.length === 2, 'the second send');
  assert.deepEqual(dt.sends[1][1], { seq: 3, id: 'c:2', type: 'n/inc', payload: { by: 5 }, rejected: 'too many' });
  server.last.deliver({ type: 'ack', id: 'c:2', seq: 3, duplicate: false });
  await refused;
  store.close();
});
