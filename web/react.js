// nodb/react: React hooks over a nodb store, for apps without Redux. A
// separate entry point so that nodb.js never depends on React: this module
// imports React from the app (`react` is a peer dependency), and is not
// served by the data view (a page without a bundler has no `react` to import).
//
//   const stock = connect(location.origin, { view: 'stock' });
//   function Total() {
//     const total = useView(stock, (s) => s?.total ?? 0);
//     const status = useStatus(stock);
//     const pending = usePending(stock);
//     …
//   }
//
// All three are built on `useSyncExternalStore`: no tearing in concurrent
// rendering, and a component re-renders only when what it reads changes.

/** @import { Store, Status } from './nodb.js' */

import { useCallback, useRef, useSyncExternalStore } from 'react';

/**
 * The view's state, or `selector(state)`: the component re-renders when the
 * selected value changes (by `isEqual`, `Object.is` by default). The store
 * keeps unchanged subtrees' identity across patches and resyncs, so
 * selecting a subtree needs no deep comparison.
 * @template S, [T=S]
 * @param {Store<S>} store
 * @param {(state: S) => T} [selector]
 * @param {(a: T, b: T) => boolean} [isEqual]
 * @returns {T}
 */
export function useView(store, selector, isEqual = Object.is) {
  const subscribe = useCallback((/** @type {() => void} */ l) => store.subscribe(l), [store]);
  /** @type {import('react').MutableRefObject<{ state: S, selector: unknown, value: T } | null>} */
  const cache = useRef(null);
  const getSnapshot = () => {
    const state = store.getState();
    if (!selector) return /** @type {T} */ (/** @type {unknown} */ (state));
    const c = cache.current;
    if (c !== null && c.state === state && c.selector === selector) return c.value;
    const value = selector(state);
    // An equal value keeps the old one, so React sees no change.
    const kept = c !== null && isEqual(c.value, value) ? c.value : value;
    cache.current = { state, selector, value: kept };
    return kept;
  };
  return useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
}

/**
 * The store's connection status: 'connecting', 'open', 'offline' or 'closed'.
 * @param {Store<any>} store
 * @returns {Status}
 */
export function useStatus(store) {
  const subscribe = useCallback((/** @type {() => void} */ l) => store.on('status', l), [store]);
  const get = () => store.status;
  return useSyncExternalStore(subscribe, get, get);
}

/**
 * How many of this client's actions wait for the server's acknowledgement
 * (e.g. while offline).
 * @param {Store<any>} store
 * @returns {number}
 */
export function usePending(store) {
  const subscribe = useCallback((/** @type {() => void} */ l) => store.on('pending', l), [store]);
  const get = () => store.pending;
  return useSyncExternalStore(subscribe, get, get);
}
