// The client as a package (issue 19): `nodb` and `nodb/react` resolve
// through package.json's exports map (Node resolves a package's own name
// from inside it), the packed tarball holds the client and its
// declarations and nothing else, the plain client never imports React, and
// the React hooks render with React's own server renderer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createElement } from 'react';
import { renderToString } from 'react-dom/server';
import * as direct from '../nodb.js';
import { fakeServer, fast, memoryStorage } from './fakes.js';

const WEB = fileURLToPath(new URL('..', import.meta.url));
const read = (path) => readFileSync(fileURLToPath(new URL(path, import.meta.url)), 'utf8');

test('the exports map: nodb is nodb.js, nodb/react is react.js, each with its declarations', async () => {
  const pkg = JSON.parse(read('../package.json'));
  assert.equal(pkg.name, 'nodb');
  assert.equal(pkg.type, 'module');
  assert.deepEqual(pkg.exports['.'], { types: './nodb.d.ts', default: './nodb.js' });
  assert.deepEqual(pkg.exports['./react'], { types: './react.d.ts', default: './react.js' });
  const viaName = await import('nodb');
  assert.equal(viaName.connect, direct.connect, 'the same module');
  const react = await import('nodb/react');
  assert.deepEqual(Object.keys(react).sort(), ['usePending', 'useStatus', 'useView']);
  const declared = [...read('../react.d.ts').matchAll(/^export function (\w+)/gm)].map((m) => m[1]);
  assert.deepEqual([...new Set(declared)].sort(), ['usePending', 'useStatus', 'useView']);
  assert.equal(pkg.peerDependencies.react !== undefined && pkg.peerDependenciesMeta.react.optional, true);
});

test('npm pack holds the client, its declarations and README, nothing else', () => {
  const [info] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: WEB, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  const files = info.files.map((f) => f.path).sort();
  const modules = readdirSync(fileURLToPath(new URL('../nodb/', import.meta.url))).filter((f) => f.endsWith('.js')).map((f) => `nodb/${f}`);
  assert.deepEqual(files, ['README.md', 'nodb.d.ts', 'nodb.js', ...modules, 'package.json', 'react.d.ts', 'react.js'].sort());
});

test('the plain client never imports React (the hooks are a separate entry)', () => {
  const modules = readdirSync(fileURLToPath(new URL('../nodb/', import.meta.url))).filter((f) => f.endsWith('.js'));
  for (const file of ['../nodb.js', ...modules.map((m) => `../nodb/${m}`)]) {
    const imports = [...read(file).matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/gm)].map((m) => m[1]);
    for (const spec of imports) assert.match(spec, /^\.\.?\//, `${file} imports ${spec}: only relative imports`);
  }
  assert.match(read('../react.js'), /from 'react'/);
});

test('the React hooks read the view, a selected part, the status and the pending count', async () => {
  const { useView, useStatus, usePending } = await import('nodb/react');
  const server = fakeServer();
  const store = direct.connect('http://h', { view: 'stock', clientId: 'c', storage: memoryStorage(), WebSocket: server.WS, backoff: fast, locks: null });
  function App() {
    const total = useView(store, (s) => s?.total ?? 'none');
    const whole = useView(store);
    return createElement('p', null, `${total} ${whole === null ? 'null' : Object.keys(whole)} ${useStatus(store)} ${usePending(store)}`);
  }
  assert.equal(renderToString(createElement(App)), '<p>none null connecting 0</p>');
  server.last.open();
  store.dispatch('stock/sold', {});
  server.last.deliver({ type: 'snapshot', seq: 1, state: { total: 7, products: {} } });
  assert.equal(renderToString(createElement(App)), '<p>7 total,products open 1</p>');
  store.close();
});
