import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { applyPatch } from '../nodb.js';

const data = (name) => JSON.parse(readFileSync(fileURLToPath(new URL(`../../shared/tests/data/${name}`, import.meta.url)), 'utf8'));

for (const file of ['tests.json', 'spec_tests.json']) {
  test(`RFC 6902 conformance: ${file}`, async (t) => {
    const cases = data(file);
    let ran = 0;
    for (const [i, c] of cases.entries()) {
      if (c.disabled || !('doc' in c) || !('patch' in c)) continue;
      ran++;
      await t.test(`#${i} ${c.comment ?? c.error ?? ''}`, () => {
        const before = structuredClone(c.doc);
        if ('error' in c) {
          assert.throws(() => applyPatch(c.doc, c.patch), (e) => e instanceof Error && typeof e.index === 'number' && 'op' in e);
        } else if ('expected' in c) {
          assert.deepStrictEqual(applyPatch(c.doc, c.patch), c.expected);
        } else {
          applyPatch(c.doc, c.patch);
        }
        assert.deepStrictEqual(c.doc, before, 'the input document is not mutated');
      });
    }
    assert.ok(ran > 10);
  });
}

test('structural sharing: a 100,000-key object', () => {
  const doc = {};
  for (let i = 0; i < 100_000; i++) doc[`k${i}`] = { i };
  const old5 = doc.k5;
  const next = applyPatch(doc, [{ op: 'replace', path: '/k5', value: { i: -5 } }]);
  assert.notEqual(next, doc);
  assert.equal(doc.k5, old5, 'old doc unchanged');
  assert.deepEqual(next.k5, { i: -5 });
  for (let i = 0; i < 100_000; i++) if (i !== 5) assert.equal(next[`k${i}`], doc[`k${i}`]);
  assert.equal(Object.keys(next).length, 100_000);
});

test('structural sharing: nested siblings keep identity', () => {
  const doc = { a: { b: { c: 1, d: [1, 2] }, e: { f: 2 } }, g: [{ h: 1 }, { h: 2 }] };
  const next = applyPatch(doc, [
    { op: 'replace', path: '/a/b/c', value: 10 },
    { op: 'add', path: '/a/b/x', value: 1 },
    { op: 'add', path: '/g/-', value: { h: 3 } },
  ]);
  assert.deepEqual(doc, { a: { b: { c: 1, d: [1, 2] }, e: { f: 2 } }, g: [{ h: 1 }, { h: 2 }] });
  assert.deepEqual(next, { a: { b: { c: 10, d: [1, 2], x: 1 }, e: { f: 2 } }, g: [{ h: 1 }, { h: 2 }, { h: 3 }] });
  assert.notEqual(next.a, doc.a);
  assert.notEqual(next.a.b, doc.a.b);
  assert.equal(next.a.b.d, doc.a.b.d);
  assert.equal(next.a.e, doc.a.e);
  assert.notEqual(next.g, doc.g);
  assert.equal(next.g[0], doc.g[0]);
  assert.equal(next.g[1], doc.g[1]);
  assert.equal(applyPatch(doc, []), doc, 'an empty patch returns the same document');
  assert.equal(applyPatch(doc, [{ op: 'test', path: '/a/e/f', value: 2 }]), doc, 'test ops copy nothing');
});

test('copy then edit does not leak into the source', () => {
  const doc = { a: { x: 1 } };
  const next = applyPatch(doc, [
    { op: 'replace', path: '/a/x', value: 2 },
    { op: 'copy', from: '/a', path: '/b' },
    { op: 'replace', path: '/b/x', value: 3 },
    { op: 'replace', path: '/a/x', value: 4 },
  ]);
  assert.deepEqual(next, { a: { x: 4 }, b: { x: 3 } });
  assert.deepEqual(doc, { a: { x: 1 } });
});

test('a failing op is atomic and reports its index', () => {
  const doc = { a: 1, list: [1] };
  const err = assert.throws(() => applyPatch(doc, [{ op: 'add', path: '/b', value: 2 }, { op: 'remove', path: '/list/5' }]),
    (e) => e.index === 1 && e.op.path === '/list/5');
  assert.equal(err, undefined);
  assert.deepEqual(doc, { a: 1, list: [1] });
});

test('__proto__ keys are plain data', () => {
  const doc = JSON.parse('{"__proto__": {"x": 1}}');
  const next = applyPatch(doc, [{ op: 'add', path: '/__proto__/y', value: 2 }, { op: 'add', path: '/z', value: 3 }]);
  assert.deepEqual(Object.keys(next), ['__proto__', 'z']);
  assert.equal(Object.getPrototypeOf(next), Object.prototype);
  assert.deepEqual(next.__proto__, { x: 1, y: 2 });
  assert.equal(({}).y, undefined);
});

test('shareEqual: equal subtrees keep the old objects, the whole when all is equal', async () => {
  const { shareEqual } = await import('../nodb/patch.js');
  const prev = { a: { x: [1, { y: 2 }] }, b: { z: 1 }, c: [1, 2] };
  const same = JSON.parse(JSON.stringify(prev));
  assert.equal(shareEqual(prev, same), prev);
  const changed = JSON.parse('{"a":{"x":[1,{"y":3}]},"b":{"z":1},"c":[1,2,3],"d":null}');
  const out = shareEqual(prev, changed);
  assert.notEqual(out, prev);
  assert.equal(out.b, prev.b);
  assert.notEqual(out.a, prev.a);
  assert.notEqual(out.c, prev.c);
  assert.deepEqual(out, JSON.parse('{"a":{"x":[1,{"y":3}]},"b":{"z":1},"c":[1,2,3],"d":null}'));
  assert.equal(out.a.x[1].y, 3);
  // A removed key, a shorter array, a type change, and a "__proto__" key.
  assert.notEqual(shareEqual({ a: 1, b: 2 }, { a: 1 }), undefined);
  assert.deepEqual(shareEqual({ a: 1, b: 2 }, { a: 1 }), { a: 1 });
  assert.deepEqual(shareEqual([1, 2], [1]), [1]);
  assert.deepEqual(shareEqual({ a: [1] }, { a: { 0: 1 } }), { a: { 0: 1 } });
  const proto = JSON.parse('{"__proto__":{"k":1},"o":{"k":2}}');
  const prevProto = JSON.parse('{"__proto__":{"k":1},"o":{"k":3}}');
  const shared = shareEqual(prevProto, proto);
  assert.equal(Object.getPrototypeOf(shared), Object.prototype, 'never sets a prototype');
  assert.equal(Object.getOwnPropertyDescriptor(shared, '__proto__').value, Object.getOwnPropertyDescriptor(prevProto, '__proto__').value);
});
