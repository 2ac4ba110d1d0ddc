// Several data views (replicas following the same chronicler) over the fake
// WebSocket: one socket at a time, the next replica in turn after a failure
// or a close by the server, resuming with `since` and `version`; a replica
// that refuses `since` (a 400 before the upgrade: a failed connection) moves
// the store on, and a snapshot is asked only after each replica failed twice
// with `since`; `GET /ready` (a fake fetch) chooses where to go; the outbox
// re-sent with the same ids on the new replica; `url`, the `replica` event.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../nodb.js';
import { pickReplica, probeReady, replicaRank } from '../nodb/connection.js';
import { fakeFetch, fakeServer, fast, memoryStorage, sleep, waitFor } from './fakes.js';

const A = 'http://a:7402';
const B = 'http://b:7402';
const C = 'http://c:7402';

/** The replica (a, b or c) a socket went to. */
const host = (ws) => new URL(ws.url).hostname;

/** A store on `urls` over a fresh fake server, `ready: false` unless `options` says. */
function open(urls, options = {}) {
  const server = fakeServer();
  const store = connect(urls, {
    view: 'stock', clientId: 'c', storage: memoryStorage(), WebSocket: server.WS, backoff: fast, locks: null, ready: false, ...options,
  });
  return { server, store };
}

/** Waits for socket number `n` (1-based) and returns it. */
async function socket(server, n) {
  await waitFor(() => server.sockets.length >= n, `socket ${n}`);
  return server.sockets[n - 1];
}

test('a failed or closed socket moves the store to the next replica in turn, resuming with since and version', async () => {
  const { server, store } = open([A, B, C]);
  const replicas = [];
  store.on('replica', (r) => replicas.push(r));
  const statuses = [];
  store.on('status', (s) => statuses.push([s, store.url]));

  const s1 = server.last;
  assert.equal(host(s1), 'a', 'the first URL first');
  assert.equal(s1.url, 'ws://a:7402/views/stock/stream?client=c');
  assert.equal(store.url, A);
  s1.open();
  s1.deliver({ type: 'snapshot', seq: 5, state: { n: 5 }, version: 'warehouse 0.1.0' });
  s1.drop(); // lost (1006)

  const s2 = await socket(server, 2);
  assert.equal(host(s2), 'b');
  assert.equal(store.url, B);
  assert.equal(s2.params.get('since'), '5');
  assert.equal(s2.params.get('version'), 'warehouse 0.1.0');
  s2.open();
  s2.deliver({ type: 'patch', seq: 6, ops: [{ op: 'replace', path: '/n', value: 6 }] });
  s2.drop(1000); // closed by the server (it stopped): a normal close from the server moves on too

  const s3 = await socket(server, 3);
  assert.equal(host(s3), 'c');
  assert.equal(s3.params.get('since'), '6');
  s3.open();
  s3.drop();
  const s4 = await socket(server, 4);
  assert.equal(host(s4), 'a', 'after the last, the first again');
  assert.equal(s4.params.get('since'), '6');
  s4.open();

  assert.deepEqual(replicas, [{ url: B, index: 1 }, { url: C, index: 2 }, { url: A, index: 0 }]);
  assert.deepEqual(store.getState(), { n: 6 });
  assert.ok(statuses.some(([s, url]) => s === 'open' && url === B), 'the status is read with the replica in use');
  assert.deepEqual(statuses.at(-1), ['open', A]);

  store.close();
  await sleep(20);
  assert.equal(server.sockets.length, 4, 'a close by the client reconnects nowhere');
});

test('with one URL nothing changes: the same URL, /ready never asked, and no replica event', async () => {
  const { fetch, requests } = fakeFetch(() => ({ status: 200, body: { status: 'ready', seq: 0, lag: 0 } }));
  const { server, store } = open(A, { ready: { fetch } });
  const moves = [];
  store.on('replica', (r) => moves.push(r));
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 3, state: {} });
  server.last.drop();
  const s2 = await socket(server, 2);
  assert.equal(s2.url, 'ws://a:7402/views/stock/stream?client=c&since=3');
  assert.equal(store.url, A);
  assert.deepEqual(moves, []);
  assert.equal(requests.length, 0);
  store.close();
});

test('a replica that refuses since (400: behind the client) moves the store on; a snapshot only after each failed twice', async () => {
  const { server, store } = open([A, B]);
  const errors = [];
  store.on('error', (e) => errors.push(e));
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 9, state: { n: 9 } });
  server.last.drop();

  // b is behind (refuses since=9 before the upgrade), then a is gone, b
  // again, a again: four failures with since, each on the next replica.
  for (let n = 2; n <= 5; n++) {
    const s = await socket(server, n);
    assert.equal(host(s), n % 2 === 0 ? 'b' : 'a');
    assert.equal(s.params.get('since'), '9', `connection ${n} still resumes`);
    s.drop(); // a failed connection: the browser sees no status code
  }
  // Each replica failed twice with since: the fallback asks for a snapshot.
  const s6 = await socket(server, 6);
  assert.equal(host(s6), 'b');
  assert.equal(s6.params.get('since'), null);
  s6.open();
  s6.deliver({ type: 'snapshot', seq: 12, state: { n: 12 } });
  assert.equal(store.seq, 12);
  // After an open socket the count starts again.
  s6.drop();
  const s7 = await socket(server, 7);
  assert.equal(s7.params.get('since'), '12');
  assert.deepEqual(errors, [], 'failed connections are not errors');
  store.close();
});

test('resuming on the next replica succeeds without a snapshot when it is not behind', async () => {
  const { server, store } = open([A, B]);
  const updates = [];
  store.on('update', (u) => updates.push(u));
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 4, state: { n: 4 } }, { type: 'patch', seq: 5, ops: [{ op: 'replace', path: '/n', value: 5 }] });
  server.last.drop();
  const s2 = await socket(server, 2);
  s2.drop(); // b refuses since=5: behind
  const s3 = await socket(server, 3); // a again: back now
  assert.equal(host(s3), 'a');
  assert.equal(s3.params.get('since'), '5');
  s3.open();
  s3.deliver({ type: 'patch', from: 6, seq: 7, ops: [{ op: 'replace', path: '/n', value: 7 }] });
  assert.deepEqual(updates.map((u) => [u.kind, u.from, u.seq]), [['snapshot', 4, 4], ['patch', 5, 5], ['patch', 6, 7]]);
  store.close();
});

test('unacknowledged actions are re-sent with the same ids on the next replica; a duplicate ack settles them', async () => {
  const { server, store } = open([A, B]);
  const s1 = server.last;
  s1.open();
  s1.deliver({ type: 'snapshot', seq: 1, state: { n: 1 } });
  const first = store.dispatch('stock/sold', { n: 1 });
  const second = store.dispatch('stock/sold', { n: 2 });
  assert.deepEqual(s1.sent.map((m) => m.action.id), ['c:1', 'c:2']);
  s1.deliver({ type: 'ack', id: 'c:1', seq: 2, duplicate: false });
  assert.equal(await first, 2);
  s1.drop(); // c:2 reached the log through a, but its ack was lost with a
  const third = store.dispatch('stock/sold', { n: 3 }); // while offline: waits in the outbox
  assert.equal(store.pending, 2);

  const s2 = await socket(server, 2);
  assert.equal(host(s2), 'b');
  s2.open();
  assert.deepEqual(s2.sent.map((m) => m.action.id), ['c:2', 'c:3'], 'the outbox, in order, with the same ids');
  assert.deepEqual(s2.sent.map((m) => m.action.payload), [{ n: 2 }, { n: 3 }]);
  s2.deliver(
    { type: 'ack', id: 'c:2', seq: 3, duplicate: true }, // the chronicler answers a re-send with its original seq
    { type: 'ack', id: 'c:3', seq: 4, duplicate: false },
  );
  assert.equal(await second, 3);
  assert.equal(await third, 4);
  s2.deliver({ type: 'patch', from: 2, seq: 4, ops: [{ op: 'replace', path: '/n', value: 4 }] });
  assert.equal(await second.applied, 3);
  assert.equal(await third.applied, 4);
  assert.equal(store.pending, 0);
  store.close();
});

test('GET /ready chooses: the first in turn that is ready and not behind, before any silent, recovering or behind one', async () => {
  // The store is on a at seq 7; a dies. b answers 503 (replaying), c 200 but
  // behind (seq 6 < 7), d 200 at seq 7: d is next although it comes last.
  const D = 'http://d:7402';
  const ready = new Map([
    ['a', () => ({ status: 200, body: { status: 'ready', seq: 0, lag: 0 } })],
    ['b', () => ({ status: 503, body: { status: 'recovering', seq: 7, lag: 40 } })],
    ['c', () => ({ status: 200, body: { status: 'ready', seq: 6, lag: 0 } })],
    ['d', () => ({ status: 200, body: { status: 'ready', seq: 7, lag: 0 } })],
  ]);
  const { fetch, requests } = fakeFetch((url) => ready.get(url.hostname)());
  const { server, store } = open([A, B, C, D], { ready: { fetch } });
  const s1 = await socket(server, 1);
  assert.equal(host(s1), 'a', 'a was ready when the store started (b, c and d asked too)');
  s1.open();
  s1.deliver({ type: 'snapshot', seq: 7, state: {} });
  ready.set('a', () => { throw new TypeError('fetch failed'); });
  s1.drop();
  const s2 = await socket(server, 2);
  assert.equal(host(s2), 'd');
  assert.equal(s2.params.get('since'), '7');
  assert.ok(requests.every((r) => r.url.pathname === '/ready' && Object.keys(r.headers).length === 0), 'no token, no headers: a simple CORS request');

  // d dies too, and nothing is ready: the silent a (then b: no answer and
  // 503 rank alike, in turn) come before the behind c.
  ready.set('d', () => { throw new TypeError('fetch failed'); });
  ready.set('b', () => { throw new TypeError('fetch failed'); });
  s2.open();
  s2.drop();
  const s3 = await socket(server, 3);
  assert.equal(host(s3), 'a');
  s3.drop();
  const s4 = await socket(server, 4);
  assert.equal(host(s4), 'b');
  store.close();
});

test('the first connection goes to the first ready replica too, and says so', async () => {
  const { fetch } = fakeFetch((url) => (url.hostname === 'a'
    ? { status: 503, body: { status: 'recovering', seq: 0, lag: 100 } }
    : { status: 200, body: { status: 'ready', seq: 100, lag: 0 } }));
  const { server, store } = open([A, B], { ready: { fetch } });
  const moves = [];
  store.on('replica', (r) => moves.push(r));
  assert.equal(store.url, A, 'the first URL until the answers are in');
  const s1 = await socket(server, 1);
  assert.equal(host(s1), 'b');
  assert.equal(store.url, B);
  assert.deepEqual(moves, [{ url: B, index: 1 }]);
  store.close();
});

test('a replica whose /ready does not answer in time is not waited for, nor is a later one when an earlier one is ready', async () => {
  const hang = new Promise(() => {});
  const { fetch } = fakeFetch((url) => {
    if (url.hostname === 'a') return hang; // never answers
    if (url.hostname === 'c') return hang;
    return { status: 200, body: { status: 'ready', seq: 0, lag: 0 } };
  });
  const t0 = Date.now();
  const { server, store } = open([A, B, C], { ready: { fetch, timeoutMs: 100 } });
  // a is first in turn and silent: b can be chosen only once a's time is up.
  const s1 = await socket(server, 1);
  const waited = Date.now() - t0;
  assert.equal(host(s1), 'b');
  assert.ok(waited >= 90, `waited ${waited} ms for a`);
  s1.open();
  store.close();

  // With a ready first in turn, the silent c is not waited for.
  const fast2 = fakeFetch((url) => (url.hostname === 'c' ? hang : { status: 200, body: { status: 'ready', seq: 0 } }));
  const t1 = Date.now();
  const other = open([A, B, C], { ready: { fetch: fast2.fetch, timeoutMs: 5000 } });
  const first = await socket(other.server, 1);
  assert.equal(host(first), 'a');
  assert.ok(Date.now() - t1 < 1000);
  other.store.close();
});

test('without a readable /ready anywhere (CORS refused, network down), replicas are taken in turn', async () => {
  const { fetch } = fakeFetch(() => { throw new TypeError('Failed to fetch'); });
  const { server, store } = open([A, B, C], { ready: { fetch } });
  const hosts = [];
  for (let n = 1; n <= 4; n++) {
    const s = await socket(server, n);
    hosts.push(host(s));
    s.drop();
  }
  assert.deepEqual(hosts, ['a', 'b', 'c', 'a']);
  store.close();
});

test('errors name the replica; a gap resyncs on the same replica; connect([]) is refused', async () => {
  const { server, store } = open([A, B]);
  const errors = [];
  store.on('error', (e) => errors.push(e));
  server.last.open();
  server.last.deliver({ type: 'snapshot', seq: 1, state: {} }, { type: 'patch', seq: 3, ops: [] });
  assert.equal(errors[0].code, 'gap');
  const s2 = await socket(server, 2);
  assert.equal(host(s2), 'a', 'a gap is not the replica failing');
  assert.equal(s2.params.get('since'), '1');
  store.close();

  const bad = fakeServer();
  class Broken { constructor(url) { if (url.includes('//a')) throw new SyntaxError('bad URL'); return new bad.WS(url); } }
  const other = connect([B, A], { view: 'stock', clientId: 'c', storage: memoryStorage(), WebSocket: Broken, backoff: fast, locks: null, ready: false });
  const seen = [];
  other.on('error', (e) => seen.push(e));
  bad.last.open();
  bad.last.drop();
  await waitFor(() => bad.sockets.length === 2, 'b again, after a');
  assert.deepEqual(seen, [{ code: 'connect', message: 'bad URL', url: A }]);
  assert.equal(host(bad.last), 'b');
  other.close();

  assert.throws(() => connect([], { view: 'stock' }), /at least one data view URL/);
  assert.throws(() => connect([A, 7], { view: 'stock' }), /must be a string/);
});

test('probeReady and pickReplica on their own', async () => {
  const ok = fakeFetch(() => ({ status: 200, body: { status: 'ready', seq: 12, lag: 0 } }));
  assert.deepEqual(await probeReady('http://a', { fetch: ok.fetch, timeoutMs: 100 }), { code: 200, status: 'ready', seq: 12 });
  assert.equal(ok.requests[0].url.href, 'http://a/ready');
  const text = async () => ({ status: 503, json: async () => { throw new SyntaxError('not JSON'); } });
  assert.deepEqual(await probeReady('http://a', { fetch: text, timeoutMs: 100 }), { code: 503, status: null, seq: null });
  let aborted = false;
  const slow = (_url, { signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => { aborted = true; reject(new Error('aborted')); }));
  assert.equal(await probeReady('http://a', { fetch: slow, timeoutMs: 20 }), null);
  assert.ok(aborted, 'a probe past its time is aborted');

  const ready = { code: 200, status: 'ready', seq: 10 };
  const behind = { code: 200, status: 'ready', seq: 8 };
  const refused = { code: 503, status: 'refused', seq: 50 };
  assert.deepEqual([ready, null, behind, refused].map((a) => replicaRank(a, 9)), [0, 1, 2, 3]);
  assert.equal(replicaRank(behind, null), 0, 'without a state nothing is behind');
  assert.equal(pickReplica([ready, ready], 1, 9), 1, 'in turn from start');
  assert.equal(pickReplica([undefined, ready], 1, 9), 1, 'the first in turn is ready: no need to wait');
  assert.equal(pickReplica([ready, undefined], 1, 9), null, 'b first in turn has not answered');
  assert.equal(pickReplica([behind, null], 0, 9), 1);
  assert.equal(pickReplica([behind, refused], 0, 9), 0);
});
