// Access tokens in the store, over the fake WebSocket: the token in the
// stream's URL, the client id taken from its `sub`, getToken asked again
// when the server closes for the token's expiry (4401) or a connection
// fails while it expires, the stream resuming with `since` and the outbox
// re-sent with the same ids, and dispatches the token forbids.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../nodb.js';
import { fakeLocks, fakeServer, fast, jwt, memoryStorage, settled, sleep, waitFor } from './fakes.js';

/** A getToken that hands out `sub`'s tokens one after another, counting the calls. */
function tokens(sub, { ttl = 3600 } = {}) {
  const given = [];
  const getToken = async () => {
    const t = jwt({ sub, n: given.length + 1 }, { ttl });
    given.push(t);
    return t;
  };
  return { getToken, given };
}

/** The test may move the clock on: `Date.now()` plus `skew.ms`. */
function withClock(fn) {
  const realNow = Date.now;
  const skew = { ms: 0 };
  Date.now = () => realNow() + skew.ms;
  return Promise.resolve(fn(skew)).finally(() => { Date.now = realNow; });
}

test('a token goes in the stream URL, and its sub makes the client id <sub>.<random>', async () => {
  const server = fakeServer();
  const token = jwt({ sub: 'ana', read: ['stock'] }, { ttl: 600 });
  const storage = memoryStorage();
  const a = connect('http://h', { view: 'stock', token, storage, WebSocket: server.WS, backoff: fast, locks: null });
  assert.match(a.clientId, /^ana\.[0-9a-f]{12}$/);
  assert.equal(server.last.params.get('token'), token);
  assert.equal(server.last.params.get('client'), a.clientId);
  server.last.open();
  a.dispatch('stock/sold', { quantity: 1 });
  assert.equal(server.last.sent[0].action.id, `${a.clientId}:1`);
  a.close();

  // Only ids of the same sub are reused: a stored `web-` id (or another
  // sub's) is someone else's outbox.
  storage.setItem('nodb:clients', JSON.stringify(['web-0123456789ab', 'bob.0123456789ab', ...JSON.parse(storage.getItem('nodb:clients'))]));
  const locks = fakeLocks();
  const b = connect('http://h', { view: 'stock', token, storage, WebSocket: server.WS, backoff: fast, locks });
  await waitFor(() => b.clientId, 'a client id');
  assert.equal(b.clientId, a.clientId, "the tab's own sub id is adopted, with its outbox");
  assert.equal(b.pending, 1);
  const c = connect('http://h', { view: 'stock', token, storage, WebSocket: server.WS, backoff: fast, locks });
  await waitFor(() => c.clientId, 'a client id');
  assert.match(c.clientId, /^ana\.[0-9a-f]{12}$/, 'a second tab mints its own id under the sub');
  assert.notEqual(c.clientId, b.clientId);

  // An explicit client id wins; a token without sub keeps the web- ids.
  const d = connect('http://h', { view: 'stock', token, clientId: 'ana.fixed', storage, WebSocket: server.WS, locks: null });
  assert.equal(d.clientId, 'ana.fixed');
  const e = connect('http://h', { view: 'stock', token: jwt({ read: ['*'] }), storage: memoryStorage(), WebSocket: server.WS, locks: null });
  assert.match(e.clientId, /^web-[0-9a-f]{12}$/);
  assert.ok(server.last.url.endsWith(`&token=${server.last.params.get('token')}`));
  for (const s of [b, c, d, e]) s.close();
});

test('without a token the URL has no token, as before', () => {
  const server = fakeServer();
  const s = connect('http://h', { view: 'v', clientId: 'c', storage: memoryStorage(), WebSocket: server.WS });
  assert.equal(server.last.url, 'ws://h/views/v/stream?client=c');
  s.close();
});

test('getToken comes before the first connection, and again after a 4401 close; the stream resumes with since', async () => {
  const server = fakeServer();
  const { getToken, given } = tokens('ops');
  const store = connect('http://h', { view: 'stock', getToken, storage: memoryStorage(), WebSocket: server.WS, backoff: fast, locks: null });
  assert.equal(store.clientId, null, 'the id waits for the first token');
  assert.equal(server.sockets.length, 0, 'no connection without a token');
  await waitFor(() => server.sockets.length === 1, 'the first connection');
  assert.equal(given.length, 1);
  assert.match(store.clientId, /^ops\.[0-9a-f]{12}$/);
  assert.equal(server.last.params.get('token'), given[0]);
  assert.equal(server.last.params.get('client'), store.clientId);
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 5, state: { n: 5 } }, { type: 'patch', seq: 6, ops: [{ op: 'replace', path: '/n', value: 6 }] });

  server.last.drop(4401, 'token expired');
  assert.equal(store.status, 'offline');
  await waitFor(() => server.sockets.length === 2, 'the reconnection');
  assert.equal(given.length, 2, 'a new token for the new connection');
  assert.equal(server.last.params.get('token'), given[1]);
  assert.equal(server.last.params.get('since'), '6', 'resumes where it was');
  assert.equal(server.last.params.get('client'), store.clientId, 'with the same client id');
  server.last.open();
  server.last.deliver({ type: 'patch', seq: 7, ops: [{ op: 'replace', path: '/n', value: 7 }] });
  assert.deepEqual(store.getState(), { n: 7 });

  // A connection lost for another reason keeps a token that is still good.
  server.last.drop();
  await waitFor(() => server.sockets.length === 3, 'the next reconnection');
  assert.equal(given.length, 2);
  assert.equal(server.last.params.get('token'), given[1]);
  assert.equal(server.last.params.get('since'), '7');
  store.close();
});

test('actions unacknowledged at a 4401 close, or dispatched while the token comes, are sent with the same ids', async () => {
  const server = fakeServer();
  let release;
  let calls = 0;
  const getToken = () => {
    calls++;
    if (calls === 1) return jwt({ sub: 'ops', n: 1 }, { ttl: 3600 }); // a plain string will do
    return new Promise((r) => { release = () => r(jwt({ sub: 'ops', n: calls }, { ttl: 3600 })); });
  };
  const store = connect('http://h', { view: 'stock', getToken, clientId: 'ops.tab', storage: memoryStorage(), WebSocket: server.WS, backoff: fast, locks: null });
  await waitFor(() => server.sockets.length === 1, 'the first connection');
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 10, state: { n: 0 } });
  const p1 = store.dispatch('n/add', 1);
  const p2 = store.dispatch('n/add', 2);
  server.last.deliver({ type: 'ack', id: 'ops.tab:1', seq: 11, duplicate: false });
  assert.equal(await p1, 11);

  server.last.drop(4401, 'token expired'); // the ack of ops.tab:2 is lost with it
  await waitFor(() => calls === 2, 'getToken');
  const p3 = store.dispatch('n/add', 3); // while the new token is on its way
  assert.equal(server.sockets.length, 1, 'no connection before the token');
  assert.equal(store.pending, 2);
  release();
  await waitFor(() => server.sockets.length === 2, 'the reconnection');
  assert.equal(server.last.params.get('since'), '10');
  server.last.open();
  assert.deepEqual(server.last.sent.map((m) => m.action), [
    { id: 'ops.tab:2', type: 'n/add', payload: 2 },
    { id: 'ops.tab:3', type: 'n/add', payload: 3 },
  ], 'the same ids, each once, in order');
  // The chronicler acknowledges a re-sent id with its original seq.
  server.last.deliver(
    { type: 'ack', id: 'ops.tab:2', seq: 12, duplicate: true },
    { type: 'patch', from: 11, seq: 12, ops: [{ op: 'replace', path: '/n', value: 3 }] },
    { type: 'ack', id: 'ops.tab:3', seq: 13, duplicate: false },
    { type: 'patch', seq: 13, ops: [{ op: 'replace', path: '/n', value: 6 }] },
  );
  assert.equal(await p2, 12);
  assert.equal(await p2.applied, 12);
  assert.equal(await p3.applied, 13);
  assert.equal(store.pending, 0);
  store.close();
});

test('a connection that fails before opening asks getToken again only when the token expires (or after three failures)', () => withClock(async (clock) => {
  const server = fakeServer();
  const { getToken, given } = tokens('ops', { ttl: 60 });
  const store = connect('http://h', { view: 'stock', getToken, clientId: 'ops.tab', storage: memoryStorage(), WebSocket: server.WS, backoff: fast, locks: null });
  await waitFor(() => server.sockets.length === 1, 'the first connection');
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 4, state: {} });
  server.last.drop();

  // Two failed connections with a good token: the same token.
  await waitFor(() => server.sockets.length === 2, 'reconnect 1');
  server.last.drop();
  await waitFor(() => server.sockets.length === 3, 'reconnect 2');
  assert.equal(given.length, 1);
  assert.equal(server.last.params.get('token'), given[0]);

  // 55 s later the token is about to expire: a failure is taken for its
  // refusal (and does not count against `since`).
  clock.ms = 55_000;
  server.last.drop();
  await waitFor(() => server.sockets.length === 4, 'reconnect 3');
  assert.equal(given.length, 2);
  assert.equal(server.last.params.get('token'), given[1]);
  assert.equal(server.last.params.get('since'), '4');
  server.last.open();

  // Three failures in a row with a token that looks good (a new server key,
  // a clock far behind) renew it too.
  server.last.drop();
  for (let n = 5; n <= 7; n++) {
    await waitFor(() => server.sockets.length === n, `reconnect ${n - 1}`);
    assert.equal(given.length, 2);
    server.last.drop();
  }
  await waitFor(() => server.sockets.length === 8, 'reconnect 7');
  assert.equal(given.length, 3);
  assert.equal(server.last.params.get('token'), given[2]);
  store.close();
}));

test('a token in the last half of its life (at most 10 s) is renewed before a reconnection; a fixed one is reported once', () => withClock(async (clock) => {
  const server = fakeServer();
  const { getToken, given } = tokens('ops', { ttl: 6 });
  const store = connect('http://h', { view: 'v', getToken, storage: memoryStorage(), WebSocket: server.WS, backoff: fast, locks: null });
  await waitFor(() => server.sockets.length === 1, 'the first connection');
  assert.equal(given.length, 1, 'a fresh 6 s token is used, not renewed at once');
  server.last.open();
  server.last.drop();
  await waitFor(() => server.sockets.length === 2, 'a reconnection');
  assert.equal(given.length, 1);
  server.last.open();
  clock.ms = 3_500; // 2.5 s left of 6
  server.last.drop();
  await waitFor(() => server.sockets.length === 3, 'another reconnection');
  assert.equal(given.length, 2, 'renewed before it is used again');
  assert.equal(server.last.params.get('token'), given[1]);
  store.close();

  // A fixed token that expired: no getToken to ask, so the store says so, once.
  const fixed = jwt({ sub: 'ops' }, { ttl: -1 });
  const errors = [];
  const s = connect('http://h', { view: 'v', token: fixed, storage: memoryStorage(), WebSocket: server.WS, backoff: fast, locks: null });
  s.on('error', (e) => errors.push(e.code));
  server.last.drop(); // refused: 401
  await waitFor(() => server.sockets.length === 5, 'a reconnection');
  assert.equal(server.last.params.get('token'), fixed);
  server.last.drop(4401, 'token expired');
  await waitFor(() => server.sockets.length === 6, 'another');
  assert.deepEqual(errors, ['unauthorized']);
  s.close();
}));

test('a getToken that fails is reported and asked again', async () => {
  const server = fakeServer();
  let calls = 0;
  const getToken = () => {
    calls++;
    if (calls === 1) throw new Error('the token service is down');
    if (calls === 2) return Promise.reject(new Error('still down'));
    if (calls === 3) return Promise.resolve(42);
    return jwt({ sub: 'ops' }, { ttl: 3600 });
  };
  const store = connect('http://h', { view: 'v', getToken, storage: memoryStorage(), WebSocket: server.WS, backoff: fast, locks: null });
  const errors = [];
  store.on('error', (e) => errors.push(e));
  const p = store.dispatch('t', 1); // waits for the client id
  await waitFor(() => server.sockets.length === 1, 'the connection');
  assert.equal(calls, 4);
  assert.deepEqual(errors.map((e) => e.code), ['token', 'token', 'token']);
  assert.match(errors[0].message, /the token service is down/);
  assert.match(errors[2].message, /not a token/);
  server.last.open();
  assert.deepEqual(server.last.sent.map((m) => m.action.id), [`${store.clientId}:1`]);
  assert.match(store.clientId, /^ops\./);
  server.last.deliver({ type: 'ack', id: `${store.clientId}:1`, seq: 1, duplicate: false });
  assert.equal(await p, 1);
  store.close();
  assert.throws(() => connect('http://h', { view: 'v', token: 7, WebSocket: server.WS }), TypeError);
  assert.throws(() => connect('http://h', { view: 'v', getToken: 'x', WebSocket: server.WS }), TypeError);
});

test('a forbidden dispatch rejects with code forbidden and the right, without an unhandled rejection', async () => {
  const unhandled = [];
  const onUnhandled = (e) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    const server = fakeServer();
    const storage = memoryStorage();
    const store = connect('http://h', { view: 'stock', token: jwt({ sub: 'ana', dispatch: ['stock/sold'] }), clientId: 'ana.tab', storage, WebSocket: server.WS, backoff: fast, locks: null });
    const errors = [];
    store.on('error', (e) => errors.push(e));
    server.last.open();
    server.last.deliver({ type: 'snapshot', seq: 1, state: {} });
    const bad = store.dispatch('stock/corrected', { quantity: 1 });
    store.dispatch('admin/wipe'); // nobody looks at this one's promise
    const good = store.dispatch('stock/sold', { quantity: 1 });
    const message = 'the token may not dispatch stock/corrected';
    server.last.deliver({ type: 'error', id: 'ana.tab:1', code: 'forbidden', message, right: 'dispatch:stock/corrected' });
    await assert.rejects(bad, (e) => e instanceof Error && e.code === 'forbidden' && e.message === message
      && e.id === 'ana.tab:1' && e.right === 'dispatch:stock/corrected');
    await assert.rejects(bad.applied, (e) => e.code === 'forbidden');
    assert.deepEqual(errors.map((e) => [e.code, e.id, e.right]), [['forbidden', 'ana.tab:1', 'dispatch:stock/corrected']]);
    // The refused action leaves the outbox and its number is used again.
    assert.deepEqual(storage.json('nodb:outbox:ana.tab').map((a) => [a.id, a.type]), [['ana.tab:1', 'admin/wipe'], ['ana.tab:2', 'stock/sold']]);
    await waitFor(() => server.sockets.length === 2, 'the reconnection');
    server.last.open();
    assert.deepEqual(server.last.sent.map((m) => m.action.id), ['ana.tab:1', 'ana.tab:2']);
    server.last.deliver({ type: 'error', id: 'ana.tab:1', code: 'forbidden', message: 'no admin', right: 'dispatch:admin/wipe' });
    await waitFor(() => server.sockets.length === 3, 'the next reconnection');
    server.last.open();
    assert.deepEqual(server.last.sent.map((m) => m.action), [{ id: 'ana.tab:1', type: 'stock/sold', payload: { quantity: 1 } }]);
    server.last.deliver({ type: 'ack', id: 'ana.tab:1', seq: 2, duplicate: false });
    assert.equal(await good, 2);
    store.close();
    await sleep(20);
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('unauthorized for a dispatch keeps it and re-sends it, same id, under a new token', async () => {
  const server = fakeServer();
  const { getToken, given } = tokens('ops');
  const store = connect('http://h', { view: 'stock', getToken, clientId: 'ops.tab', storage: memoryStorage(), WebSocket: server.WS, backoff: fast, locks: null });
  await waitFor(() => server.sockets.length === 1, 'the first connection');
  server.last.open();
  const p = store.dispatch('n/add', 1);
  server.last.deliver({ type: 'error', id: 'ops.tab:1', code: 'unauthorized', message: 'the token expired' });
  assert.equal(await settled(p), false);
  assert.equal(store.pending, 1);
  await waitFor(() => server.sockets.length === 2, 'the reconnection');
  assert.equal(given.length, 2);
  assert.equal(server.last.params.get('token'), given[1]);
  server.last.open();
  assert.deepEqual(server.last.sent.map((m) => m.action.id), ['ops.tab:1']);
  server.last.deliver({ type: 'ack', id: 'ops.tab:1', seq: 3, duplicate: false });
  assert.equal(await p, 3);
  store.close();
});
