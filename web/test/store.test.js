import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createReduxStore, dispatched } from '../nodb.js';
import { fakeLocks, fakeServer, fast, memoryStorage, settled, sleep, waitFor } from './fakes.js';

// ---------------------------------------------------------------------------

function setup(opts = {}) {
  const server = fakeServer(opts.server);
  const storage = opts.storage ?? memoryStorage();
  const store = connect('http://nodb.test:7400/', {
    view: 'stock', clientId: 'c', storage, WebSocket: server.WS, backoff: fast, ...opts.connect,
  });
  return { server, storage, store };
}

test('snapshot, patches, subscribers, seq events and a gap', async () => {
  const { server, store } = setup();
  const statuses = [];
  store.on('status', (s) => statuses.push(s));
  assert.equal(store.status, 'connecting');
  assert.equal(store.getState(), null);
  assert.equal(store.seq, 0);
  assert.equal(store.clientId, 'c');
  assert.equal(server.sockets.length, 1);
  assert.equal(server.last.url, 'ws://nodb.test:7400/views/stock/stream?client=c');
  server.last.open();
  assert.equal(store.status, 'open');

  let calls = 0;
  const unsubscribe = store.subscribe(() => calls++);
  const seqs = [];
  store.on('seq', (s) => seqs.push(s));

  server.last.deliver({ type: 'snapshot', seq: 3, state: { stock: { apple: { shelf: 2 } }, other: { x: 1 } } });
  assert.equal(store.seq, 3);
  assert.deepEqual(store.getState(), { stock: { apple: { shelf: 2 } }, other: { x: 1 } });
  assert.equal(calls, 1);

  const before = store.getState();
  server.last.deliver({ type: 'patch', seq: 4, ops: [{ op: 'replace', path: '/stock/apple/shelf', value: 1 }] });
  assert.equal(store.seq, 4);
  assert.equal(store.getState().stock.apple.shelf, 1);
  assert.equal(before.stock.apple.shelf, 2, 'the old state is never mutated');
  assert.equal(store.getState().other, before.other, 'untouched subtrees keep their identity');
  assert.equal(calls, 2);

  // An empty patch moves seq on (the 'seq' event fires) but subscribers are
  // not called: the state is the very same object.
  const at4 = store.getState();
  server.last.deliver({ type: 'patch', seq: 5, ops: [] });
  assert.equal(store.seq, 5);
  assert.equal(calls, 2);
  assert.equal(store.getState(), at4);

  // A coalesced patch.
  server.last.deliver({ type: 'patch', from: 6, seq: 8, ops: [{ op: 'add', path: '/stock/pear', value: { shelf: 4 } }] });
  assert.equal(store.seq, 8);
  assert.equal(calls, 3);
  assert.deepEqual(seqs, [3, 4, 5, 8]);

  // A gap: the store resyncs with since=8.
  const errors = [];
  store.on('error', (e) => errors.push(e));
  const first = server.last;
  first.deliver({ type: 'patch', from: 10, seq: 10, ops: [{ op: 'add', path: '/x', value: 1 }] });
  assert.equal(errors[0].code, 'gap');
  assert.equal(store.seq, 8, 'nothing of the gapped patch was applied');
  assert.equal(first.closed, true);
  assert.equal(store.status, 'offline');
  await waitFor(() => server.sockets.length === 2, 'the reconnect');
  assert.equal(server.last.params.get('since'), '8');
  assert.equal(server.last.params.get('client'), 'c');
  assert.equal(store.status, 'connecting');
  server.last.open();
  first.deliver({ type: 'patch', seq: 9, ops: [] }); // late messages of the old socket are ignored
  assert.equal(store.seq, 8);
  server.last.deliver({ type: 'patch', from: 9, seq: 10, ops: [{ op: 'add', path: '/x', value: 1 }] });
  assert.equal(store.seq, 10);
  assert.equal(store.getState().x, 1);
  assert.equal(calls, 4);
  unsubscribe();
  server.last.deliver({ type: 'patch', seq: 11, ops: [{ op: 'add', path: '/y', value: 1 }] });
  assert.equal(calls, 4);
  store.close();
  assert.equal(store.status, 'closed');
  assert.deepEqual(statuses, ['open', 'offline', 'connecting', 'open', 'closed']);
  await sleep(10);
  assert.equal(server.sockets.length, 2, 'no reconnect after close()');
});

test('dispatch: outbox before send, ack resolves with seq, applied after the covering patch', async () => {
  const storage = memoryStorage();
  const seenAtSend = [];
  const { server, store } = setup({
    storage,
    server: { onSend: (m) => seenAtSend.push(storage.json('nodb:outbox:c')?.map((a) => a.id)) },
  });
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 10, state: { n: 0 } });

  const p = store.dispatch('stock/sold', { product: 'apple', quantity: 1 }, { user: 'ana' });
  assert.deepEqual(server.last.sent, [{
    type: 'dispatch',
    action: { id: 'c:1', type: 'stock/sold', payload: { product: 'apple', quantity: 1 }, meta: { user: 'ana' } },
  }]);
  assert.deepEqual(seenAtSend, [['c:1']], 'the action was in the stored outbox before it was sent');
  assert.equal(storage.getItem('nodb:next:c'), '2');
  assert.equal(store.pending, 1);

  const acks = [];
  store.on('ack', (a) => acks.push(a));
  server.last.deliver({ type: 'ack', id: 'c:1', seq: 11, duplicate: false });
  assert.equal(await p, 11);
  assert.deepEqual(acks, [{ id: 'c:1', seq: 11, duplicate: false, type: 'stock/sold', payload: { product: 'apple', quantity: 1 } }]);
  assert.equal(store.pending, 0);
  assert.equal(storage.getItem('nodb:outbox:c'), null);
  assert.equal(await settled(p.applied), false, 'not applied before the patch covering seq 11');
  server.last.deliver({ type: 'patch', seq: 11, ops: [{ op: 'replace', path: '/n', value: 1 }] });
  assert.equal(await p.applied, 11);

  // The patch comes before the ack.
  const p2 = store.dispatch('n/inc');
  assert.equal(server.last.sent[1].action.id, 'c:2');
  assert.equal(server.last.sent[1].action.payload, null);
  server.last.deliver({ type: 'patch', seq: 12, ops: [{ op: 'replace', path: '/n', value: 2 }] });
  assert.equal(await settled(p2.applied), false);
  server.last.deliver({ type: 'ack', id: 'c:2', seq: 12, duplicate: false });
  assert.equal(await p2, 12);
  assert.equal(await p2.applied, 12);

  // A coalesced patch covering the ack's seq.
  const p3 = store.dispatch('n/inc');
  server.last.deliver({ type: 'ack', id: 'c:3', seq: 14, duplicate: false });
  server.last.deliver({ type: 'patch', from: 13, seq: 15, ops: [] });
  assert.equal(await p3.applied, 14);
  store.close();
});

test('a rejected action rejects applied with the reason', async () => {
  const { server, store } = setup();
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 20, state: { stock: 1 } });
  const rejected = [];
  store.on('rejected', (r) => rejected.push(r));

  const p = store.dispatch('stock/sold', { quantity: 5 });
  server.last.deliver({ type: 'ack', id: 'c:1', seq: 21, duplicate: false });
  assert.equal(await p, 21, 'the action was accepted in the log');
  server.last.deliver({ type: 'rejected', seq: 21, id: 'c:1', reason: 'only 1 left' });
  server.last.deliver({ type: 'patch', seq: 21, ops: [] });
  await assert.rejects(p.applied, (e) => e.reason === 'only 1 left' && e.seq === 21 && e.id === 'c:1');
  assert.deepEqual(rejected, [{ seq: 21, id: 'c:1', reason: 'only 1 left', type: 'stock/sold', payload: { quantity: 5 } }]);

  // Rejection and patch both before the ack.
  const p2 = store.dispatch('stock/sold', { quantity: 9 });
  server.last.deliver({ type: 'rejected', seq: 22, id: 'c:2', reason: 'nope' });
  server.last.deliver({ type: 'patch', seq: 22, ops: [] });
  server.last.deliver({ type: 'ack', id: 'c:2', seq: 22, duplicate: false });
  assert.equal(await p2, 22);
  await assert.rejects(p2.applied, (e) => e.reason === 'nope');
  assert.equal(rejected[1].payload.quantity, 9);
  store.close();
});

test('dispatch while offline stays in the outbox and is sent on reconnect with since', async () => {
  const { server, storage, store } = setup();
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 5, state: {} });
  server.last.drop();
  assert.equal(store.status, 'offline');
  const p = store.dispatch('todo/add', { text: 'x' });
  assert.equal(store.pending, 1);
  assert.deepEqual(storage.json('nodb:outbox:c').map((a) => a.id), ['c:1']);
  await waitFor(() => server.sockets.length === 2, 'the reconnect');
  assert.equal(server.last.params.get('since'), '5');
  assert.deepEqual(server.last.sent, []);
  server.last.open();
  assert.deepEqual(server.last.sent.map((m) => m.action.id), ['c:1']);
  // The ack is lost with the connection: re-sent again, same id, on the next one.
  server.last.drop();
  await waitFor(() => server.sockets.length === 3, 'the second reconnect');
  server.last.open();
  assert.deepEqual(server.last.sent.map((m) => m.action), [{ id: 'c:1', type: 'todo/add', payload: { text: 'x' } }]);
  server.last.deliver({ type: 'ack', id: 'c:1', seq: 6, duplicate: true });
  assert.equal(await p, 6, 'a duplicate ack counts as an acknowledgement');
  assert.equal(store.pending, 0);
  store.close();
});

test('a reloaded tab re-sends the stored outbox with the same ids and numbers after them', async () => {
  const storage = memoryStorage();
  const s1 = fakeServer();
  // No clientId and no locks: one id, minted and stored.
  const a = connect('http://h', { view: 'v', storage, WebSocket: s1.WS, backoff: fast, locks: null });
  assert.match(a.clientId, /^web-[0-9a-f]{12}$/);
  assert.deepEqual(storage.json('nodb:clients'), [a.clientId]);
  const id = a.clientId;
  const pa = a.dispatch('x/one', 1);
  const pb = a.dispatch('x/two', 2);
  assert.equal(s1.last.sent.length, 0, 'not sent: the socket never opened');
  a.close(); // the tab goes away
  await assert.rejects(pa, (e) => e.code === 'closed');
  await assert.rejects(pb, (e) => e.code === 'closed');
  assert.deepEqual(storage.json(`nodb:outbox:${id}`).map((x) => x.id), [`${id}:1`, `${id}:2`]);

  const s2 = fakeServer();
  const b = connect('http://h', { view: 'v', storage, WebSocket: s2.WS, backoff: fast, locks: null });
  assert.equal(b.clientId, id);
  assert.equal(b.pending, 2);
  const acks = [];
  b.on('ack', (x) => acks.push(x));
  const pc = b.dispatch('x/three', 3);
  s2.last.open();
  assert.deepEqual(s2.last.sent.map((m) => [m.action.id, m.action.type]), [
    [`${id}:1`, 'x/one'], [`${id}:2`, 'x/two'], [`${id}:3`, 'x/three'],
  ]);
  s2.last.deliver(
    { type: 'ack', id: `${id}:1`, seq: 7, duplicate: true },
    { type: 'ack', id: `${id}:2`, duplicate: true },
    { type: 'ack', id: `${id}:3`, seq: 9, duplicate: false },
  );
  assert.equal(await pc, 9);
  assert.deepEqual(acks.map((x) => [x.id, x.seq, x.duplicate]), [[`${id}:1`, 7, true], [`${id}:2`, null, true], [`${id}:3`, 9, false]]);
  assert.equal(b.pending, 0);
  assert.equal(storage.getItem(`nodb:outbox:${id}`), null);
  assert.equal(storage.getItem(`nodb:next:${id}`), '4');
  b.close();
});

test('with Web Locks, two tabs get different ids and a closed tab\'s outbox is adopted', async () => {
  const storage = memoryStorage();
  const locks = fakeLocks();
  const server = fakeServer();
  const opts = { view: 'v', storage, WebSocket: server.WS, backoff: fast, locks };
  const a = connect('http://h', opts);
  assert.equal(a.clientId, null, 'the id is picked asynchronously');
  const early = a.dispatch('early/one'); // queued until the id is known
  assert.equal(a.pending, 1);
  await waitFor(() => a.clientId, 'a client id');
  const b = connect('http://h', opts);
  await waitFor(() => b.clientId, 'a client id');
  assert.notEqual(a.clientId, b.clientId);
  assert.deepEqual(storage.json('nodb:clients'), [a.clientId, b.clientId]);
  assert.deepEqual(storage.json(`nodb:outbox:${a.clientId}`).map((x) => x.id), [`${a.clientId}:1`]);
  a.close();
  await assert.rejects(early, (e) => e.code === 'closed');
  await waitFor(() => !locks.held.has(`nodb:client:${a.clientId}`), 'the lock release');
  const c = connect('http://h', opts);
  await waitFor(() => c.clientId, 'a client id');
  assert.equal(c.clientId, a.clientId, 'the free id is reused');
  assert.equal(c.pending, 1);
  const sock = server.sockets.find((s) => s.params.get('client') === c.clientId && !s.closed);
  sock.open();
  assert.deepEqual(sock.sent.map((m) => m.action.id), [`${a.clientId}:1`]);
  b.close();
  c.close();
});

test('a permanent error rejects both promises and frees the number', async () => {
  const { server, storage, store } = setup();
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 1, state: {} });
  const bad = store.dispatch('too/big', 'x');
  const good = store.dispatch('ok', 1);
  const errors = [];
  store.on('error', (e) => errors.push(e));
  server.last.deliver({ type: 'error', id: 'c:1', code: 'payload_too_large', message: 'too large' });
  await assert.rejects(bad, (e) => e.code === 'payload_too_large' && e.id === 'c:1');
  await assert.rejects(bad.applied, (e) => e.code === 'payload_too_large');
  assert.equal(errors[0].code, 'payload_too_large');
  // The next action takes the freed number, on a fresh connection.
  assert.deepEqual(storage.json('nodb:outbox:c').map((a) => [a.id, a.type]), [['c:1', 'ok']]);
  await waitFor(() => server.sockets.length === 2, 'the reconnect');
  server.last.open();
  assert.deepEqual(server.last.sent.map((m) => [m.action.id, m.action.type]), [['c:1', 'ok']]);
  server.last.deliver({ type: 'ack', id: 'c:1', seq: 2, duplicate: false });
  assert.equal(await good, 2);
  assert.equal(store.dispatch('next').constructor, Promise);
  assert.equal(server.last.sent[1].action.id, 'c:2');
  store.close();
});

test('invalid dispatches are refused locally without using a number', async () => {
  const { server, store } = setup();
  server.last.open();
  await assert.rejects(store.dispatch(''), (e) => e.code === 'invalid_action');
  await assert.rejects(store.dispatch('t', null, { n: 1 }), (e) => e.code === 'invalid_action');
  await assert.rejects(store.dispatch('t', 10n), (e) => e.code === 'invalid_action');
  store.dispatch('t');
  assert.equal(server.last.sent[0].action.id, 'c:1');
  store.close();
});

test('unavailable keeps the action and re-sends it later; out_of_order after lost storage renumbers', async () => {
  const { server, storage, store } = setup();
  server.last.open();
  const p = store.dispatch('a');
  server.last.deliver({ type: 'error', id: 'c:1', code: 'unavailable', message: 'disk full; retry later' });
  assert.equal(store.pending, 1);
  await waitFor(() => server.last.sent.length === 2, 'the re-send');
  assert.deepEqual(server.last.sent.map((m) => m.action.id), ['c:1', 'c:1']);
  server.last.deliver({ type: 'ack', id: 'c:1', seq: 1, duplicate: false });
  assert.equal(await p, 1);

  // Storage said we are at 5, but the server expects 2 (storage was restored from an old copy...).
  storage.setItem('nodb:next:c', '5');
  const q = store.dispatch('b');
  assert.equal(server.last.sent[2].action.id, 'c:5');
  server.last.deliver({ type: 'error', id: 'c:5', code: 'out_of_order', message: 'action c:5 is out of order: the next action expected from client "c" is number 2' });
  await waitFor(() => server.sockets.length === 2 && server.last.readyState === 0, 'the reconnect');
  server.last.open();
  assert.deepEqual(server.last.sent.map((m) => m.action.id), ['c:2']);
  server.last.deliver({ type: 'ack', id: 'c:2', seq: 2, duplicate: false });
  assert.equal(await q, 2);
  assert.equal(storage.getItem('nodb:next:c'), '3');
  store.close();
});

test('id_reused renumbers the unsent tail from the next free number', async () => {
  const { server, storage, store } = setup();
  server.last.open();
  // Storage restored from an old copy: number 3 was already used by another action.
  storage.setItem('nodb:next:c', '3');
  const q = store.dispatch('b');
  assert.equal(server.last.sent[0].action.id, 'c:3');
  server.last.deliver({ type: 'error', id: 'c:3', code: 'id_reused', expected: 7, message: 'c:3 was used by another action' });
  await waitFor(() => server.sockets.length === 2, 'the reconnect');
  server.last.open();
  assert.deepEqual(server.last.sent.map((m) => m.action.id), ['c:7']);
  server.last.deliver({ type: 'ack', id: 'c:7', seq: 7, duplicate: false });
  assert.equal(await q, 7);
  assert.equal(storage.getItem('nodb:next:c'), '8');
  store.close();
});

test('out_of_order reads a structured `expected` field before the message', async () => {
  for (const expected of [2, 'c:2', '2']) {
    const { server, storage, store } = setup();
    server.last.open();
    storage.setItem('nodb:next:c', '5');
    const q = store.dispatch('b');
    assert.equal(server.last.sent[0].action.id, 'c:5');
    // The message names another number: the field wins.
    server.last.deliver({ type: 'error', id: 'c:5', code: 'out_of_order', expected, message: 'out of order (next: 9)' });
    await waitFor(() => server.sockets.length === 2, 'the reconnect');
    server.last.open();
    assert.deepEqual(server.last.sent.map((m) => m.action.id), ['c:2'], `expected: ${JSON.stringify(expected)}`);
    server.last.deliver({ type: 'ack', id: 'c:2', seq: 2, duplicate: false });
    assert.equal(await q, 2);
    store.close();
  }
});

test('failed connections with since fall back to a snapshot; a failed patch resyncs from a snapshot', async () => {
  const { server, store } = setup();
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 50, state: { a: 1 } });
  server.last.drop();
  await waitFor(() => server.sockets.length === 2, 'reconnect 1');
  assert.equal(server.last.params.get('since'), '50');
  server.last.drop(); // e.g. HTTP 400: since is ahead of the (restarted) server
  await waitFor(() => server.sockets.length === 3, 'reconnect 2');
  assert.equal(server.last.params.get('since'), '50');
  server.last.drop();
  await waitFor(() => server.sockets.length === 4, 'reconnect 3');
  assert.equal(server.last.params.get('since'), null, 'no since after repeated failures');
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 3, state: { b: 2 } });
  assert.equal(store.seq, 3);
  assert.deepEqual(store.getState(), { b: 2 });

  const errors = [];
  store.on('error', (e) => errors.push(e.code));
  server.last.deliver({ type: 'patch', seq: 4, ops: [{ op: 'remove', path: '/missing' }] });
  assert.deepEqual(errors, ['patch_failed']);
  assert.equal(store.seq, 3);
  await waitFor(() => server.sockets.length === 5, 'the resync');
  assert.equal(server.last.params.get('since'), null);
  store.close();
});

test('https becomes wss and view names are encoded', () => {
  const server = fakeServer();
  const store = connect('https://example.com/base/', { view: 'a b', clientId: 'x:y', WebSocket: server.WS, storage: memoryStorage() });
  assert.equal(server.last.url, 'wss://example.com/base/views/a%20b/stream?client=x%3Ay');
  store.close();
});

test('createReduxStore over a live store', async () => {
  const { server, store } = setup();
  const redux = createReduxStore(store);
  server.last.open();
  let calls = 0;
  redux.subscribe(() => calls++);
  server.last.deliver({ type: 'snapshot', seq: 1, state: { n: 1 } });
  assert.deepEqual(redux.getState(), { n: 1 });
  assert.equal(calls, 1);
  const action = { type: 'n/add', payload: 2, meta: { user: 'ana' } };
  assert.equal(redux.dispatch(action), action, 'a Redux dispatch returns the action');
  const p = dispatched(action);
  assert.deepEqual(server.last.sent[0].action, { id: 'c:1', type: 'n/add', payload: 2, meta: { user: 'ana' } });
  server.last.deliver({ type: 'ack', id: 'c:1', seq: 2, duplicate: false }, { type: 'patch', seq: 2, ops: [{ op: 'replace', path: '/n', value: 3 }] });
  assert.equal(await p.applied, 2);
  assert.deepEqual(redux.getState(), { n: 3 });
  store.close();
});

test('without Web Locks in a page, each tab keeps its own id in sessionStorage', () => {
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'sessionStorage');
  const server = fakeServer();
  const open = (session) => {
    globalThis.sessionStorage = session;
    const s = connect('http://h', { view: 'v', WebSocket: server.WS, locks: null });
    s.close();
    return s.clientId;
  };
  try {
    const tab1 = memoryStorage();
    const tab2 = memoryStorage();
    const a = open(tab1);
    const b = open(tab2);
    assert.notEqual(a, b);
    assert.equal(open(tab1), a, 'a reload of the tab keeps its id');
  } finally {
    if (saved) Object.defineProperty(globalThis, 'sessionStorage', saved);
    else delete globalThis.sessionStorage;
  }
});

test('a read-only store takes no client id, adopts no outbox and refuses dispatch', async () => {
  const server = fakeServer();
  const storage = memoryStorage();
  storage.setItem('nodb:clients', JSON.stringify(['web-left']));
  storage.setItem('nodb:outbox:web-left', JSON.stringify([{ id: 'web-left:1', type: 't', payload: null }]));
  const store = connect('http://h', { view: 'activity', readOnly: true, storage, WebSocket: server.WS, locks: fakeLocks() });
  assert.equal(store.clientId, null);
  assert.equal(server.last.params.get('client'), null);
  server.last.open();
  assert.deepEqual(server.last.sent, [], 'the outbox of another client is left alone');
  await assert.rejects(store.dispatch('t', 1), (e) => e.code === 'read_only');
  assert.equal(storage.json('nodb:outbox:web-left').length, 1);
  store.close();
});

test('a resync keeps the objects of unchanged subtrees, and notifies nobody when nothing changed (issue 19)', async () => {
  const { server, store } = setup();
  server.last.open();
  const state = (pearTotal) => ({
    products: { pear: { total: pearTotal, locations: { shelf: pearTotal } }, fig: { total: 2, locations: { shelf: 2 } } },
    order: ['pear', 'fig'],
    total: pearTotal + 2,
  });
  server.last.deliver({ type: 'snapshot', seq: 1, state: state(1) });
  const first = store.getState();
  let calls = 0;
  store.subscribe(() => calls++);
  const seqs = [];
  store.on('seq', (s) => seqs.push(s));

  // The same state again (a resync): the very same object, no notification.
  server.last.deliver({ type: 'snapshot', seq: 2, state: state(1) });
  assert.equal(store.getState(), first);
  assert.equal(calls, 0);
  assert.deepEqual(seqs, [2], 'seq moves on');

  // One product changed: it and its ancestors are new, the rest is the old.
  server.last.deliver({ type: 'snapshot', seq: 3, state: state(5) });
  const next = store.getState();
  assert.equal(calls, 1);
  assert.notEqual(next, first);
  assert.notEqual(next.products.pear, first.products.pear);
  assert.equal(next.products.pear.total, 5);
  assert.equal(next.products.fig, first.products.fig);
  assert.equal(next.order, first.order);
  assert.deepEqual(next, state(5));
  store.close();
});

test('the pending event follows the count of unacknowledged actions', async () => {
  const { server, store } = setup();
  const counts = [];
  store.on('pending', (n) => counts.push(n));
  store.dispatch('a'); // offline: waits in the outbox
  store.dispatch('b');
  server.last.open();
  server.last.deliver({ type: 'ack', id: 'c:1', seq: 1 }, { type: 'ack', id: 'c:2', seq: 2 });
  assert.deepEqual(counts, [1, 2, 1, 0]);
  assert.equal(store.pending, 0);
  store.close();
});

test('payloads are checked at run time: JSON only, undefined fields left out', async () => {
  const { server, store } = setup();
  server.last.open();
  for (const [payload, why] of [
    [{ when: new Date(0) }, /\.when is a Date/],
    [{ f: () => 1 }, /\.f is a function/],
    [[1, Infinity], /\[1\] is Infinity/],
    [new Map(), /is a Map/],
    [Symbol('s'), /symbol/],
  ]) {
    await assert.rejects(store.dispatch('t', payload), (e) => e.code === 'invalid_action' && why.test(e.message), String(why));
  }
  const cycle = { a: {} };
  cycle.a.back = cycle;
  await assert.rejects(store.dispatch('t', cycle), /cycle/);
  // Shared (not cyclic) subtrees are fine; undefined fields are left out.
  const shared = { x: 1 };
  store.dispatch('t', { a: shared, b: shared, c: undefined, d: [undefined], e: Object.create(null) });
  assert.deepEqual(server.last.sent[0].action.payload, { a: { x: 1 }, b: { x: 1 }, d: [null], e: {} });
  store.close();
});

test('moving to a data view with other code: the snapshot\'s version is kept, sent with since, and a new snapshot is one change', async () => {
  const { server, store } = setup();
  server.last.open();
  assert.equal(store.version, null);
  server.last.deliver({ type: 'snapshot', seq: 7, version: 'warehouse 0.1.0', state: { pear: { n: 1 }, apple: { n: 2 } } });
  assert.equal(store.version, 'warehouse 0.1.0');
  server.last.deliver({ type: 'patch', seq: 8, ops: [{ op: 'replace', path: '/pear/n', value: 3 }] });
  assert.equal(store.version, 'warehouse 0.1.0', 'a patch keeps the version');

  // Resuming sends the version with since.
  server.last.drop();
  await waitFor(() => server.sockets.length === 2, 'the reconnect');
  assert.equal(server.last.params.get('since'), '8');
  assert.equal(server.last.params.get('version'), 'warehouse 0.1.0');
  server.last.open();

  // The data view runs other code: it answers with a snapshot at the same
  // seq, made by its code. Subscribers see one change from the old state to
  // the new; subtrees equal to the old keep their objects.
  const old = store.getState();
  let changes = 0;
  const seen = [];
  store.subscribe(() => { changes++; seen.push(store.getState()); });
  const updates = [];
  store.on('update', (u) => updates.push(u));
  server.last.deliver({ type: 'snapshot', seq: 8, version: 'warehouse 0.2.0', state: { pear: { n: 4 }, apple: { n: 2 } } });
  assert.equal(changes, 1);
  assert.deepEqual(seen, [{ pear: { n: 4 }, apple: { n: 2 } }]);
  assert.equal(store.getState().apple, old.apple, 'the unchanged subtree keeps its identity');
  assert.deepEqual(old, { pear: { n: 3 }, apple: { n: 2 } }, 'the old state is untouched');
  assert.deepEqual(updates, [{ kind: 'snapshot', from: 8, seq: 8, changed: true }]);
  assert.equal(store.version, 'warehouse 0.2.0');

  // The next resume sends the new version; a snapshot without one forgets it.
  server.last.drop();
  await waitFor(() => server.sockets.length === 3, 'the second reconnect');
  assert.equal(server.last.params.get('version'), 'warehouse 0.2.0');
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 9, state: { pear: { n: 4 }, apple: { n: 2 } } });
  assert.equal(changes, 1, 'a snapshot equal to the state is no change');
  assert.equal(store.version, null);
  server.last.drop();
  await waitFor(() => server.sockets.length === 4, 'the third reconnect');
  assert.equal(server.last.params.get('since'), '9');
  assert.equal(server.last.params.has('version'), false);
  store.close();
});

test('a version goes only with since: a connection asking for a snapshot sends none', async () => {
  const { server, store } = setup();
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 3, version: 'v 1', state: { a: 1 } });
  // A failed patch: the store asks for a snapshot (no since, so no version).
  server.last.deliver({ type: 'patch', seq: 4, ops: [{ op: 'remove', path: '/nope' }] });
  await waitFor(() => server.sockets.length === 2, 'the reconnect');
  assert.equal(server.last.params.has('since'), false);
  assert.equal(server.last.params.has('version'), false);
  assert.match(server.last.url, /^ws:\/\/nodb\.test:7400\/views\/stock\/stream\?client=c$/);
  store.close();
});
