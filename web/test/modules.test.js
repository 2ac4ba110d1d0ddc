// The client's modules on their own: the outbox (numbering, storing,
// renumbering), the connection's helpers, and the store's privacy (its
// internals are private class fields, out of reach).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Outbox, memoryStorage, mintId, numberOf } from '../nodb/outbox.js';
import { backoffDelay, streamUrl, tokenClaims } from '../nodb/connection.js';
import { connect } from '../nodb.js';

test('the outbox numbers after the stored next number and every action it holds, and stores before returning', () => {
  const storage = memoryStorage();
  storage.setItem('nodb:next:c', '4');
  storage.setItem('nodb:outbox:c', JSON.stringify([{ id: 'c:7', type: 'old', payload: null }]));
  const outbox = new Outbox(storage);
  assert.deepEqual(outbox.adopt('c').map((a) => a.id), ['c:7']);
  assert.equal(outbox.clientId, 'c');
  const action = { id: '', type: 't', payload: 1 };
  assert.equal(outbox.add(action), 'c:8');
  assert.equal(action.id, 'c:8');
  assert.equal(storage.getItem('nodb:next:c'), '9');
  assert.deepEqual(JSON.parse(storage.getItem('nodb:outbox:c')).map((a) => a.id), ['c:7', 'c:8']);
  assert.equal(outbox.size, 2);
  assert.ok(outbox.has('c:8') && outbox.hasNumber(7) && !outbox.hasNumber(9));
  outbox.actions.pop(); // a copy
  assert.equal(outbox.size, 2);

  // Renumbering from 2 (the server expects 2: storage was lost) keeps the order.
  assert.deepEqual(outbox.renumber(2), [['c:7', 'c:2'], ['c:8', 'c:3']]);
  assert.equal(action.id, 'c:3', 'the action objects get their new ids');
  assert.equal(storage.getItem('nodb:next:c'), '4');
  assert.equal(outbox.remove('c:2'), true);
  assert.equal(outbox.remove('c:2'), false);
  assert.equal(outbox.remove('c:3'), true);
  assert.equal(storage.getItem('nodb:outbox:c'), null, 'an empty outbox leaves nothing stored');
});

test('a store without a client id has no outbox to add to', () => {
  const outbox = new Outbox(memoryStorage());
  assert.deepEqual(outbox.adopt(null), []);
  assert.throws(() => outbox.add({ id: '', type: 't', payload: null }), /no client id/);
});

test('numberOf reads the number after the last colon', () => {
  assert.equal(numberOf('web-1:12'), 12);
  assert.equal(numberOf('a:b:3'), 3);
});

test('back-off: exponential with jitter in the upper half, capped', () => {
  const b = { initialMs: 100, maxMs: 1000 };
  for (let i = 0; i < 200; i++) {
    const d0 = backoffDelay(0, b);
    assert.ok(d0 >= 50 && d0 <= 100, `${d0}`);
    const d3 = backoffDelay(3, b);
    assert.ok(d3 >= 400 && d3 <= 800, `${d3}`);
    const d50 = backoffDelay(50, b);
    assert.ok(d50 >= 500 && d50 <= 1000, `${d50}`);
  }
});

test('stream URLs', () => {
  assert.equal(streamUrl('http://h:7400/', 'stock'), 'ws://h:7400/views/stock/stream');
  assert.equal(streamUrl('https://h/base/?x=1#y', 'a/b'), 'wss://h/base/views/a%2Fb/stream');
});

test('token claims: the JWT payload as base64url JSON (UTF-8, no padding), unverified', () => {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  // "~~~???" makes both base64url-only characters appear ("fn5-Pz8_").
  const claims = { sub: 'ana.é', exp: 1795000000, x: '~~~???' };
  assert.match(part(claims), /-.*_|_.*-/);
  assert.deepEqual(tokenClaims(`${part({ alg: 'HS256' })}.${part(claims)}.sig`), claims);
  for (const n of [1, 2, 3]) { // every padding length
    const c = { s: 'x'.repeat(n) };
    assert.deepEqual(tokenClaims(`h.${part(c)}.s`), c);
  }
  for (const bad of ['', 'abc', 'a..b', `h.${part([1])}.s`, `h.${part('str')}.s`, 'h.%%%.s', `h.${Buffer.from('{').toString('base64url')}.s`]) {
    assert.equal(tokenClaims(bad), null, bad);
  }
});

test('client ids are minted under a prefix', () => {
  assert.match(mintId(), /^web-[0-9a-f]{12}$/);
  assert.match(mintId('ana.'), /^ana\.[0-9a-f]{12}$/);
});

test("the store's internals are private", () => {
  const sockets = [];
  const store = connect('http://h', {
    view: 'v', clientId: 'c', storage: memoryStorage(),
    WebSocket: class { constructor(url) { this.url = url; sockets.push(this); } send() {} close() {} },
  });
  assert.deepEqual(Object.keys(store), [], 'no own enumerable properties');
  const names = new Set();
  for (let o = store; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) for (const k of Object.getOwnPropertyNames(o)) names.add(k);
  assert.deepEqual([...names].filter((k) => k.startsWith('_')), []);
  assert.deepEqual([...names].filter((k) => k !== 'constructor').sort(),
    ['clientId', 'close', 'dispatch', 'getState', 'on', 'pending', 'seq', 'sources', 'status', 'subscribe', 'url', 'version']);
  assert.throws(() => { store.seq = 5; }, TypeError, 'seq is read-only');
  store.close();
});
