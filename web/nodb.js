// nodb.js: the browser client of nodb, a Redux-style state server.
// Dependency-free ES modules; works as <script type="module"> and in Node 20.
// Wire protocol: docs/protocol.md. Types: nodb.d.ts.
//
// This file is the public entry point; the parts live in nodb/:
//   patch.js       applyPatch: RFC 6902, immutable with structural sharing
//   connection.js  the stream's WebSocket: reconnecting with back-off, `since`, the token, failover
//   outbox.js      actions numbered and stored before sending; client ids, Web Locks
//   store.js       the store: state, seq, status, subscribe, dispatch
//   redux.js       createReduxStore, nodbMiddleware, createNodbSlice, dispatched
//   devtools.js    connectDevtools: the server's history in the Redux DevTools extension
//
// React hooks are a separate entry, react.js (`nodb/react`), so that this one
// never depends on React.

/** @import { ConnectOptions, Json } from './nodb.d.ts' */

import { Store } from './nodb/store.js';

export { applyPatch } from './nodb/patch.js';
export { createNodbSlice, createReduxStore, dispatched, nodbMiddleware } from './nodb/redux.js';
export { connectDevtools } from './nodb/devtools.js';

/**
 * Connects to view `options.view` of the nodb data view at `url` (e.g.
 * `location.origin` or "http://127.0.0.1:7400"; `http(s)` becomes `ws(s)`)
 * and returns a live store. Given an array of URLs (data views following the
 * same chronicler), it uses one at a time and fails over to another.
 * @template [S=Json]
 * @param {string | readonly string[]} url
 * @param {ConnectOptions<S>} options
 * @returns {Store<S>}
 */
export function connect(url, options) {
  return new Store(url, options);
}
