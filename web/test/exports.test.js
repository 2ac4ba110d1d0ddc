// nodb.js and nodb.d.ts cannot drift apart: every name nodb.js exports is
// declared in nodb.d.ts and every value nodb.d.ts declares is exported
// (`npm run typecheck` then checks the types themselves); and the data view
// serves every module of the client.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as nodb from '../nodb.js';

const read = (path) => readFileSync(fileURLToPath(new URL(path, import.meta.url)), 'utf8');

/** The values (functions, classes, constants) a declaration file exports. */
function declaredValues(dts) {
  const names = new Set();
  for (const m of dts.matchAll(/^export\s+(?:declare\s+)?(?:async\s+)?(?:function\*?|const|let|var|class|enum)\s+([A-Za-z_$][\w$]*)/gm)) names.add(m[1]);
  for (const m of dts.matchAll(/^export\s+(?:declare\s+)?\{([^}]*)\}/gm)) {
    for (const part of m[1].split(',')) {
      const name = part.trim().replace(/^type\s+.*/, '').split(/\s+as\s+/).pop();
      if (name) names.add(name);
    }
  }
  return names;
}

test('every export of nodb.js is declared in nodb.d.ts, and vice versa', () => {
  const exported = Object.keys(nodb).sort();
  const declared = [...declaredValues(read('../nodb.d.ts'))].sort();
  assert.deepEqual(exported, declared);
  assert.deepEqual(exported, ['applyPatch', 'connect', 'connectDevtools', 'createNodbSlice', 'createReduxStore', 'dispatched', 'nodbMiddleware']);
  for (const name of exported) assert.equal(typeof nodb[name], 'function', name);
});

test('the declarations parse as this test expects', () => {
  const names = declaredValues([
    'export function a(): void;',
    'export declare const b: number;',
    'export interface NotAValue {}',
    'export type AlsoNot = 1;',
    'export { c, d as e, type F };',
  ].join('\n'));
  assert.deepEqual([...names].sort(), ['b', 'c', 'e', 'a'].sort());
});

test('the data view serves nodb.js, nodb.d.ts and every module in nodb/', () => {
  const rs = read('../../dataview/src/web.rs');
  const modules = readdirSync(fileURLToPath(new URL('../nodb/', import.meta.url))).filter((f) => f.endsWith('.js'));
  assert.ok(modules.length >= 5, `modules: ${modules}`);
  for (const file of ['nodb.js', 'nodb.d.ts', ...modules.map((m) => `nodb/${m}`)]) {
    assert.ok(rs.includes(`"../../web/${file}"`), `web.rs embeds web/${file}`);
    assert.ok(rs.includes(`"/${file}"`), `web.rs routes /${file}`);
  }
});
